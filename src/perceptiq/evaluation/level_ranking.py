"""The distortion-level protocol (issue 11): does a scorer order each photograph's synthetic distortions
by their level, with no human ratings at all?

Input: rows ``(path, ref, distortion, level)`` -- one pristine row per reference (level 0, no
distortion) and its distorted versions (levels 1..L of each type, 5 = most severe, as written by
``perceptiq.data.synthetic.synthesize``) -- and, per scorer, one score per row plus the scorer's
direction (``higher_is_better``).

Every score is first turned into a *quality* q (``score`` if higher is better, else ``-score``) and
the level into ``-level``, so a perfect quality measure gets +1 on every correlation below.

Summary numbers (all "higher is better"):

* ``pooled_srcc`` -- Spearman correlation of q with -level over all rows of all types and references,
  each pristine image counted once. Also ``pooled_plcc`` (Pearson) and ``pooled_krcc`` (Kendall
  tau-b), the same pairs.
* per type t: for each reference r, the SRCC of q with -level over the pristine image of r and the
  versions of r distorted by t (levels 0..5: 6 values); ``median_srcc[t]`` is the median over
  references. ``n_types_at_least`` counts the types whose median is >= ``type_threshold`` (0.7);
  ``min_type_median`` is the smallest per-type median; ``median_type_median`` the median of them.
* ``pristine_win_rate`` -- over all (reference, type, level in ``win_levels`` = {3, 4, 5}) pairs, the
  fraction in which the pristine image's q is strictly greater than the distorted version's. A tie
  counts as a failure (a measure that cannot tell them apart has not ranked the pristine first).

Undefined and missing values, never dropped silently:

* a row whose score is nan (an unreadable file) is left out of the pooled correlations; a
  (reference, type) group containing such a row is left out of its type's median, and a pair
  containing it out of the win rate. Every such row, group and pair is counted in the result
  (``nan_rows``, ``n_groups_incomplete``, ``n_pairs_incomplete``) and shown in the tables.
* a group in which the scorer gives every level the same score has no defined SRCC; it counts as
  SRCC 0 (no ordering information, the value Spearman's numerator gives) and is counted in
  ``n_groups_constant``.
* a type left with no complete group has median nan, and then ``min_type_median`` is nan too.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

#: The summary numbers, in table order, with their labels. Every one is "higher is better".
SUMMARY_NUMBERS: tuple[tuple[str, str], ...] = (
    ("pooled_srcc", "pooled SRCC (quality vs -level, all types)"),
    ("pooled_plcc", "pooled PLCC (quality vs -level)"),
    ("pooled_krcc", "pooled KRCC (quality vs -level)"),
    ("n_types_at_least", "types with median within-image SRCC >= {threshold}"),
    ("min_type_median", "min over types of median within-image SRCC"),
    ("median_type_median", "median over types of median within-image SRCC"),
    ("pristine_win_rate", "pristine scored strictly better than levels {levels}"),
)


@dataclass(frozen=True)
class LevelRow:
    """One image of the protocol: ``level`` 0 (pristine, ``distortion`` None) or 1.. (distorted)."""

    path: str
    ref: str
    distortion: str | None
    level: int


@dataclass(frozen=True)
class Bars:
    """Pass marks for the summary numbers; the defaults are issue 11's acceptance bars."""

    pooled_srcc: float | None = 0.80
    n_types_at_least: int | None = 22
    min_type_median: float | None = 0.0   # strictly greater: "> 0 for every type"
    pristine_win_rate: float | None = 0.95

    def text(self, key: str) -> str:
        value = getattr(self, key, None)
        if value is None:
            return ""
        return f"> {value:g}" if key == "min_type_median" else f">= {value:g}"

    def met(self, key: str, value: float) -> bool | None:
        bar = getattr(self, key, None)
        if bar is None:
            return None
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        return value > bar if key == "min_type_median" else value >= bar


ISSUE11_BARS = Bars()


@dataclass(frozen=True)
class TypeResult:
    """One distortion type for one scorer."""

    distortion: str
    median_srcc: float
    srcc_by_ref: dict[str, float]      # complete groups only
    n_groups: int                      # references having this type
    n_groups_incomplete: int           # left out: a nan score in the group
    n_groups_constant: int             # all scores equal: counted as SRCC 0
    pristine_wins: int
    pristine_pairs: int                # complete pairs at the win levels

    @property
    def pristine_win_rate(self) -> float:
        return self.pristine_wins / self.pristine_pairs if self.pristine_pairs else math.nan


@dataclass(frozen=True)
class LevelRankingResult:
    """Everything the protocol measured for one scorer (see the module docstring)."""

    scorer: str
    higher_is_better: bool
    n_rows: int
    n_refs: int
    types: tuple[str, ...]
    pooled_srcc: float
    pooled_plcc: float
    pooled_krcc: float
    per_type: dict[str, TypeResult]
    type_threshold: float
    win_levels: tuple[int, ...]
    pristine_wins: int
    pristine_pairs: int
    nan_rows: tuple[tuple[int, str], ...]     # (row index, path)
    n_pairs_incomplete: int
    notes: tuple[str, ...] = field(default=())

    @property
    def type_medians(self) -> np.ndarray:
        return np.array([self.per_type[t].median_srcc for t in self.types], dtype=np.float64)

    @property
    def n_types_at_least(self) -> int:
        medians = self.type_medians
        return int(np.sum(medians[np.isfinite(medians)] >= self.type_threshold))

    @property
    def min_type_median(self) -> float:
        medians = self.type_medians
        return float(np.min(medians)) if medians.size and not np.isnan(medians).any() else math.nan

    @property
    def median_type_median(self) -> float:
        medians = self.type_medians
        return float(np.median(medians)) if medians.size and not np.isnan(medians).any() else math.nan

    @property
    def pristine_win_rate(self) -> float:
        return self.pristine_wins / self.pristine_pairs if self.pristine_pairs else math.nan

    @property
    def n_groups_incomplete(self) -> int:
        return sum(result.n_groups_incomplete for result in self.per_type.values())

    @property
    def n_groups_constant(self) -> int:
        return sum(result.n_groups_constant for result in self.per_type.values())

    def summary(self) -> dict[str, float]:
        """The summary numbers by key (see :data:`SUMMARY_NUMBERS`)."""
        return {key: float(getattr(self, key)) for key, _ in SUMMARY_NUMBERS}

    def meets(self, bars: Bars = ISSUE11_BARS) -> dict[str, bool]:
        """Which bars are met, for the numbers that have one."""
        return {key: bars.met(key, getattr(self, key)) for key, _ in SUMMARY_NUMBERS if getattr(bars, key, None) is not None}


# -- input ---------------------------------------------------------------------------------------------
def validate_rows(rows: Sequence[LevelRow]) -> None:
    """Check the protocol's shape; raise ``ValueError`` naming the first offending row (0-based index)."""
    if not rows:
        raise ValueError("no rows given")
    seen: dict[tuple[str, str | None, int], int] = {}
    pristine_refs, distorted_refs = set(), {}
    for index, row in enumerate(rows):
        where = f"row {index} ({row.path})"
        if isinstance(row.level, bool) or not isinstance(row.level, (int, np.integer)) or row.level < 0:
            raise ValueError(f"{where}: level must be an integer >= 0, got {row.level!r}")
        if row.level == 0 and row.distortion:
            raise ValueError(f"{where}: level 0 is the pristine image and has no distortion, got '{row.distortion}'")
        if row.level > 0 and not row.distortion:
            raise ValueError(f"{where}: level {row.level} needs a distortion type")
        if not row.ref:
            raise ValueError(f"{where}: empty reference id")
        key = (row.ref, row.distortion or None, int(row.level))
        if key in seen:
            what = "pristine image" if row.level == 0 else f"{row.distortion} level {row.level}"
            raise ValueError(f"{where}: duplicate {what} of reference '{row.ref}' (also row {seen[key]})")
        seen[key] = index
        if row.level == 0:
            pristine_refs.add(row.ref)
        else:
            distorted_refs.setdefault(row.ref, index)
    for ref, index in distorted_refs.items():
        if ref not in pristine_refs:
            raise ValueError(f"row {index} ({rows[index].path}): reference '{ref}' has distorted versions but no "
                             "pristine row (level 0); the protocol compares every version with its pristine image")


def rows_from_synthetic(csv_path: str | Path) -> list[LevelRow]:
    """The protocol's rows for a dataset written by ``perceptiq.data.synthetic.synthesize``.

    ``labels.csv`` holds the distorted images (``path, score, ref, distortion, level, ...``); its
    ``ref`` column is the path of the pristine copy, which becomes the level-0 row of that reference
    (placed before its distorted rows). Paths are resolved against the CSV's folder. Errors name the
    CSV row.
    """
    csv_path = Path(csv_path)
    folder = csv_path.parent
    rows: list[LevelRow] = []
    seen_refs: set[str] = set()
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in ("path", "ref", "distortion", "level") if column not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{csv_path}: missing columns {missing} (expected the labels.csv of `perceptiq synthesize`)")
        for number, record in enumerate(reader, start=2):
            where = f"{csv_path} row {number}"
            ref, distortion, level_text = ((record.get(key) or "").strip() for key in ("ref", "distortion", "level"))
            if not (record.get("path") or "").strip() or not ref or not distortion:
                raise ValueError(f"{where}: 'path', 'ref' and 'distortion' must all be set")
            try:
                level = int(level_text)
            except ValueError:
                raise ValueError(f"{where}: level '{level_text}' is not an integer") from None
            if level < 1:
                raise ValueError(f"{where}: a distorted image needs level >= 1, got {level}")
            ref_path = str(folder / ref)
            if ref_path not in seen_refs:
                seen_refs.add(ref_path)
                rows.append(LevelRow(ref_path, ref_path, None, 0))
            rows.append(LevelRow(str(folder / record["path"].strip()), ref_path, distortion, level))
    validate_rows(rows)
    return rows


# -- the protocol --------------------------------------------------------------------------------------
def _spearman_or_zero(quality: np.ndarray, minus_level: np.ndarray) -> tuple[float, bool]:
    """SRCC, and whether the scores were constant (then 0 by convention)."""
    if np.ptp(quality) == 0:
        return 0.0, True
    return float(stats.spearmanr(quality, minus_level).statistic), False


def evaluate_level_ranking(
    rows: Sequence[LevelRow],
    scores: Sequence[float] | np.ndarray,
    *,
    higher_is_better: bool,
    scorer: str = "scorer",
    type_threshold: float = 0.7,
    win_levels: Sequence[int] = (3, 4, 5),
) -> LevelRankingResult:
    """Run the protocol for one scorer: ``scores`` (N,) in the order of ``rows`` (N), nan = unscored."""
    validate_rows(rows)
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != (len(rows),):
        raise ValueError(f"{scorer}: {values.shape} scores for {len(rows)} rows; give exactly one score per row")
    quality = values if higher_is_better else -values
    levels = np.array([row.level for row in rows], dtype=np.float64)
    finite = np.isfinite(quality)
    nan_rows = tuple((int(i), rows[i].path) for i in np.flatnonzero(~finite))
    notes = []
    if nan_rows:
        notes.append(f"{len(nan_rows)} of {len(rows)} rows have no score (nan), e.g. {nan_rows[0][1]}; "
                     "left out of every number they belong to")

    pooled = _pooled(quality[finite], -levels[finite], notes)

    pristine_index = {row.ref: i for i, row in enumerate(rows) if row.level == 0}
    groups: dict[str, dict[str, list[int]]] = {}
    for index, row in enumerate(rows):
        if row.level > 0:
            groups.setdefault(row.distortion, {}).setdefault(row.ref, []).append(index)

    wins_set = {int(level) for level in win_levels}
    per_type: dict[str, TypeResult] = {}
    total_wins = total_pairs = total_incomplete_pairs = 0
    for distortion, by_ref in groups.items():
        srcc_by_ref: dict[str, float] = {}
        incomplete = constant = wins = pairs = 0
        for ref, members in by_ref.items():
            pristine = pristine_index[ref]
            indices = [pristine] + members
            if finite[indices].all():
                value, was_constant = _spearman_or_zero(quality[indices], -levels[indices])
                srcc_by_ref[ref] = value
                constant += was_constant
            else:
                incomplete += 1
            for index in members:
                if rows[index].level not in wins_set:
                    continue
                if finite[pristine] and finite[index]:
                    pairs += 1
                    wins += bool(quality[pristine] > quality[index])
                else:
                    total_incomplete_pairs += 1
        median = float(np.median(list(srcc_by_ref.values()))) if srcc_by_ref else math.nan
        per_type[distortion] = TypeResult(distortion, median, srcc_by_ref, len(by_ref), incomplete, constant, wins, pairs)
        total_wins += wins
        total_pairs += pairs
    if any(result.n_groups_constant for result in per_type.values()):
        constant_total = sum(result.n_groups_constant for result in per_type.values())
        notes.append(f"{constant_total} (reference, type) groups have equal scores at every level: counted as SRCC 0")
    empty = [name for name, result in per_type.items() if math.isnan(result.median_srcc)]
    if empty:
        notes.append(f"no complete group (every one has a nan score) for types {empty}: their median is nan")
    if total_pairs == 0:
        notes.append(f"no (pristine, level {sorted(wins_set)}) pair could be compared")

    return LevelRankingResult(
        scorer=scorer,
        higher_is_better=bool(higher_is_better),
        n_rows=len(rows),
        n_refs=len(pristine_index),
        types=tuple(groups),
        pooled_srcc=pooled[0],
        pooled_plcc=pooled[1],
        pooled_krcc=pooled[2],
        per_type=per_type,
        type_threshold=float(type_threshold),
        win_levels=tuple(sorted(wins_set)),
        pristine_wins=total_wins,
        pristine_pairs=total_pairs,
        nan_rows=nan_rows,
        n_pairs_incomplete=total_incomplete_pairs,
        notes=tuple(notes),
    )


def _pooled(quality: np.ndarray, minus_level: np.ndarray, notes: list[str]) -> tuple[float, float, float]:
    if quality.size < 3 or np.ptp(minus_level) == 0:
        notes.append("pooled correlations undefined: fewer than 3 scored rows or a single level")
        return math.nan, math.nan, math.nan
    if np.ptp(quality) == 0:
        notes.append("pooled correlations: every score is equal; counted as 0")
        return 0.0, 0.0, 0.0
    return (float(stats.spearmanr(quality, minus_level).statistic),
            float(stats.pearsonr(quality, minus_level).statistic),
            float(stats.kendalltau(quality, minus_level, variant="b").statistic))


def evaluate_scorers(
    rows: Sequence[LevelRow],
    scorers: Mapping[str, tuple[Sequence[float] | np.ndarray, bool]],
    **options,
) -> list[LevelRankingResult]:
    """:func:`evaluate_level_ranking` for each ``name -> (scores, higher_is_better)``, in the given order."""
    return [evaluate_level_ranking(rows, scores, higher_is_better=direction, scorer=name, **options)
            for name, (scores, direction) in scorers.items()]


def beats(candidate: LevelRankingResult, baseline: LevelRankingResult) -> dict[str, bool]:
    """For every summary number: is ``candidate`` strictly better than ``baseline``? (nan never is.)"""
    mine, theirs = candidate.summary(), baseline.summary()
    return {key: bool(mine[key] > theirs[key]) if not (math.isnan(mine[key]) or math.isnan(theirs[key])) else False
            for key, _ in SUMMARY_NUMBERS}


# -- tables --------------------------------------------------------------------------------------------
def format_cell(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals; ``nan`` for None or nan."""
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _summary_cell(result: LevelRankingResult, key: str, digits: int) -> str:
    if key == "n_types_at_least":
        return f"{result.n_types_at_least} / {len(result.types)}"
    if key == "pristine_win_rate":
        return f"{format_cell(result.pristine_win_rate, digits)} ({result.pristine_wins}/{result.pristine_pairs})"
    return format_cell(getattr(result, key), digits)


def _check_same_rows(results: Sequence[LevelRankingResult]) -> None:
    if not results:
        raise ValueError("no results to render")
    first = results[0]
    for other in results[1:]:
        if (other.n_rows, other.n_refs, other.types) != (first.n_rows, first.n_refs, first.types):
            raise ValueError(f"scorers '{first.scorer}' and '{other.scorer}' were evaluated on different rows; "
                             "a side-by-side table needs the same files for every scorer")


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A Markdown table: one header row, a rule, one row per ``body`` entry (cells already formatted)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def render_summary_table(results: Sequence[LevelRankingResult], *, digits: int = 3, bars: Bars | None = None) -> str:
    """One Markdown table: rows = summary numbers (then the counts of unscored items), columns = scorers.

    With ``bars`` a "bar" column is added and a number that misses its bar is marked with ✗.
    """
    _check_same_rows(results)
    first = results[0]
    header = ["", *[f"{r.scorer} ({'higher' if r.higher_is_better else 'lower'} = better)" for r in results]]
    if bars is not None:
        header.append("bar")
    body = []
    for key, label in SUMMARY_NUMBERS:
        label = label.format(threshold=f"{first.type_threshold:g}",
                             levels="/".join(str(level) for level in first.win_levels))
        cells = []
        for result in results:
            cell = _summary_cell(result, key, digits)
            if bars is not None and bars.met(key, getattr(result, key)) is False:
                cell += " ✗"
            cells.append(cell)
        row = [label, *cells]
        if bars is not None:
            row.append(bars.text(key))
        body.append(row)
    counts = [
        ("rows without a score (nan)", lambda r: str(len(r.nan_rows))),
        ("(image, type) groups left out (nan) / constant (SRCC 0)", lambda r: f"{r.n_groups_incomplete} / {r.n_groups_constant}"),
        ("pristine pairs left out (nan)", lambda r: str(r.n_pairs_incomplete)),
    ]
    for label, cell in counts:
        body.append([label, *[cell(r) for r in results], *([""] if bars is not None else [])])
    caption = (f"{first.n_refs} reference images, {len(first.types)} distortion types, {first.n_rows} images "
               f"(pristine counted once per reference). Quality = score if higher is better, else -score; "
               f"correlations are of quality with -level, so +1 is perfect.")
    return caption + "\n\n" + markdown_table(header, body)


def render_per_type_table(results: Sequence[LevelRankingResult], *, digits: int = 3) -> str:
    """Markdown table: one row per distortion type; per scorer the median within-image SRCC (levels 0-5)
    and the pristine win rate over the win levels, as ``median / win rate``."""
    _check_same_rows(results)
    first = results[0]
    levels = "/".join(str(level) for level in first.win_levels)
    header = ["type", *[f"{r.scorer}: median SRCC / pristine > {levels}" for r in results]]
    body = []
    for distortion in first.types:
        cells = []
        for result in results:
            entry = result.per_type[distortion]
            cell = f"{format_cell(entry.median_srcc, digits)} / {format_cell(entry.pristine_win_rate, 2)}"
            if entry.n_groups_incomplete:
                cell += f" ({entry.n_groups_incomplete} left out)"
            cells.append(cell)
        body.append([distortion, *cells])
    return markdown_table(header, body)
