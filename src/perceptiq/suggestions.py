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
