"""Records of the dataset registry: one labelled image, a labelled dataset, and the
description of a dataset (its spec) kept as plain data.

Nothing here reads files; parsers (``perceptiq.data.parsers``) do that and
``perceptiq.data.registry`` ties the two together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Task = Literal["quality", "aesthetics"]
Scene = Literal["natural", "ai-generated", "face", "underwater"]
LabelKind = Literal["MOS", "DMOS"]


class DatasetFormatError(ValueError):
    """A label file exists but does not have the expected content.

    The message always names the file and, where the fault is in one row, the row
    number (1-based, as a text editor or spreadsheet shows it).
    """


@dataclass(frozen=True)
class Sample:
    """One labelled image.

    ``label`` is the number as the dataset's label file gives it (MOS or DMOS on the
    native scale); ``score`` is that number mapped to [0, 1] with higher = better
    (DMOS flipped). Unlabelled datasets (Waterloo Exploration) carry NaN in both.
    """

    path: Path
    label: float
    score: float
    ref: str | None = None
    distortion: str | None = None
    level: int | None = None
    dataset: str = ""
    scene: str | None = None


@dataclass(frozen=True)
class LabelScale:
    """How one label column maps to a [0, 1] score, higher = better.

    ``low``/``high`` None means "min and max of the labels in the file" (used where
    the papers give no range). ``kind`` None marks an unlabelled dataset.

    ``strict`` (default): a label outside [low, high] is an error (wrong file or column).
    ``strict=False`` makes the range *nominal*: labels past an end are kept and mapped on
    the same line, so their score lies a little outside [0, 1] (LIVE's realigned DMOS runs
    past Table 9's 100; the Gamma authors' loader maps it the same way, unclipped).
    """

    kind: LabelKind | None
    low: float | None
    high: float | None
    range_source: str
    strict: bool = True

    @property
    def uses_file_range(self) -> bool:
        return self.low is None or self.high is None

    def describe(self) -> str:
        if self.kind is None:
            return "unlabelled"
        span = "min..max of the file" if self.uses_file_range else f"[{self.low:g}, {self.high:g}]"
        if not self.uses_file_range and not self.strict:
            span += " (nominal: labels past it are kept)"
        flip = ", flipped (lower DMOS = better)" if self.kind == "DMOS" else ""
        return f"{self.kind} {span}{flip}"

    def normaliser(self, labels: Sequence[float]) -> Callable[[float], float]:
        """Return label -> score in [0, 1] (higher is better).

        score = (label - low) / (high - low), then 1 - score for DMOS; low/high come
        from the spec or, where it has none, from ``labels`` (the whole file).
        """
        if self.kind is None:
            return lambda label: math.nan
        if self.uses_file_range:
            finite = [x for x in labels if math.isfinite(x)]
            if not finite:
                raise ValueError("cannot normalise by the file's range: no labels")
            low, high = min(finite), max(finite)
        else:
            low, high = float(self.low), float(self.high)  # type: ignore[arg-type]
        width = high - low
        flip = self.kind == "DMOS"

        def to_score(label: float) -> float:
            unit = 0.5 if width == 0 else (label - low) / width
            return 1.0 - unit if flip else unit

        return to_score

    def contains(self, label: float) -> bool:
        """True where ``label`` lies inside the fixed range (always True without one)."""
        if self.uses_file_range or self.kind is None:
            return True
        return float(self.low) <= label <= float(self.high)  # type: ignore[arg-type]

    def accepts(self, label: float) -> bool:
        """Whether loading accepts ``label``: inside the range, or anywhere when the range is nominal."""
        return not self.strict or self.contains(label)


@dataclass(frozen=True)
class LabelColumn:
    """One selectable label of a dataset (KonIQ has two MOS columns, AGIQA-3K two MOS)."""

    key: str
    source: str
    scale: LabelScale


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the toolkit knows about one dataset, as data.

    ``parser`` turns a root folder into raw records (see ``parsers._base``); it is
    None where the native format is not publicly documented (``native_format`` is
    then None and ``format_note`` says why) — such datasets are read from a generic
    CSV instead. ``options`` names the parser-specific keyword options.
    """

    name: str
    title: str
    aliases: tuple[str, ...]
    task: Task
    scene: Scene
    columns: tuple[LabelColumn, ...]
    default_column: str
    expected_count: int | None
    count_source: str
    synthetic: bool
    layout: str
    native_format: str | None
    format_note: str
    format_source: str
    parser: Callable[..., list] | None = field(default=None, compare=False, repr=False)
    options: Mapping[str, str] = field(default_factory=dict, compare=False)

    def column(self, key: str | None = None) -> LabelColumn:
        wanted = (key or self.default_column).casefold()
        for column in self.columns:
            if column.key.casefold() == wanted:
                return column
        known = ", ".join(c.key for c in self.columns)
        raise ValueError(f"dataset '{self.name}' has no label column '{key}'; choose one of: {known}")

    @property
    def labelled(self) -> bool:
        return self.column().scale.kind is not None


@dataclass
class LabeledDataset:
    """A spec, its samples and the root they were read from.

    ``skipped`` lists images named by the label file but absent on disk, when the
    dataset was loaded with ``missing="skip"`` (empty otherwise).
    """

    spec: DatasetSpec
    samples: list[Sample]
    root: Path
    column: str = ""
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def count_matches_expected(self) -> bool | None:
        """Whether the sample count equals the spec's published count (None: none known)."""
        if self.spec.expected_count is None:
            return None
        return len(self.samples) == self.spec.expected_count
