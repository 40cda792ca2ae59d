"""The contract between a parser and the registry.

A parser is ``parse(root, column, options) -> list[RawRecord]``: it reads the label
files of one native layout and says, for every labelled image, where the image
should be (relative candidates) and its label on the native scale. It does not
normalise and does not check that images exist: the registry does both, once, for
every dataset alike (``perceptiq.data.registry.load_dataset``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from perceptiq.data.parsers._files import CaseInsensitiveRoot

#: A candidate starting with this prefix means "the unique file of that name anywhere
#: under the root" (PIPAL spreads its images over several folders by design).
ANYWHERE = "**/"


@dataclass(frozen=True)
class RawRecord:
    """One labelled image as the label file states it.

    ``image``: relative paths to try in order (POSIX separators, any case).
    ``origin``: where the label came from, e.g. ``"dmos.csv row 7"``, for messages.
    ``scene``: only for generic CSV rows that name their own scene; else the spec's.
    """

    image: tuple[str, ...]
    label: float
    origin: str
    ref: str | None = None
    distortion: str | None = None
    level: int | None = None
    scene: str | None = None


Parser = Callable[[CaseInsensitiveRoot, str, Mapping[str, object]], list[RawRecord]]
