"""The one "did you mean" of every name lookup (models, recipes, datasets, architectures, views, settings).

A leaf module (standard library only), so that the packages that must not import model code — ``data``,
``classical``, ``imaging`` — can use it too.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable


def did_you_mean(name: str, known: Iterable[str], *, n: int = 3, cutoff: float = 0.5,
                 show: Callable[[str], str] = str) -> str:
    """`` Did you mean 'a', 'b'?`` for the up to ``n`` known names closest to ``name``, or ``""``.

    ``cutoff`` is difflib's similarity ratio in [0, 1] below which a name is not suggested; ``show`` maps a
    matched key to the name to print (lookups that match normalised keys print the real names; repeats are
    dropped, the closest first).
    """
    close = difflib.get_close_matches(name, list(known), n=n, cutoff=cutoff)
    names = list(dict.fromkeys(show(c) for c in close))
    return f" Did you mean {', '.join(repr(c) for c in names)}?" if names else ""


def refuse_unknown_keys(given: Iterable[str], known: Iterable[str], *, what: str, where: str = "") -> None:
    """Raise ``ValueError`` naming every key of ``given`` not in ``known``, each with its closest known key.

    ``what`` names one key (``"stem setting"``), ``where`` prefixes the message (``"recipe protocol: "``).
    The known keys are listed only when some unknown key has no close match (a hint is enough otherwise).
    """
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    hints = {key: did_you_mean(key, known, n=1) for key in unknown}
    text = " ".join(f"{key!r}.{hint}" for key, hint in hints.items())
    listing = f" Known: {', '.join(known)}." if not all(hints.values()) else ""
    plural = "s" if len(unknown) > 1 else ""
    raise ValueError(f"{where}unknown {what}{plural} {text}{listing}")
