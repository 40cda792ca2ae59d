"""Where a scorer's pooled SRCC goes, on issue 11's distortion-level protocol (``level_ranking``).

The pooled SRCC asks one scale to hold every photograph and every type: level k of any type of any
photograph should score between levels k-1 and k+1 of all the others. Two different failures break
that, and the within-image numbers of ``level_ranking`` see neither. From the same scores
(quality q = score, or -score when lower is better; d = q - q(pristine of the same photograph), the
*drop*):

* ``within_image_srcc`` -- pooled SRCC of d against -level (pristine rows d = 0): every photograph
  moved to a common start. Its gain over ``pooled_srcc`` is what the spread of the pristine images'
  qualities (content: a graphic photograph scored like a colour-block distortion) costs.
* ``calibration_srcc`` -- pooled SRCC when every distorted row is replaced by the mean drop of its
  (type, level) and every pristine row by 0: no content effect and no spread within a (type, level),
  only the scorer's calibration across types. A low value means the types' drops disagree (a level-5
  drop of one type smaller than a level-2 drop of another) and no content fix will reach the bar.
* ``content_to_drop`` -- standard deviation of the pristine qualities over the mean level-5 drop: the
  content spread in units of a severe distortion, free of the scorer's scale; nan when the mean change at
  the top level is not a drop (the variance of the Laplacian, which noise raises).
* ``drops`` -- per type, the mean drop at each level (the scorer's own units), and ``lowest_pristine``,
  the photographs whose pristine image scores lowest: where to look.

Rows with a nan score, and every row of a photograph whose pristine score is nan, are left out and
counted in ``n_rows_left_out``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .level_ranking import LevelRow, format_cell, markdown_table, validate_rows

#: Rows of ``render_diagnosis_table``, in order.
DIAGNOSIS_NUMBERS: tuple[tuple[str, str], ...] = (
    ("pooled_srcc", "pooled SRCC (the summary's, over the rows kept here)"),
    ("within_image_srcc", "pooled SRCC of the drop from each photograph's pristine score (content removed)"),
    ("calibration_srcc", "pooled SRCC of the (type, level) mean drops (calibration across types only)"),
    ("content_to_drop", "SD of pristine scores / mean level-5 drop (content spread)"),
)


@dataclass(frozen=True)
class LevelDiagnosis:
    """The numbers of the module docstring for one scorer."""

    scorer: str
    pooled_srcc: float
    within_image_srcc: float
    calibration_srcc: float
    content_to_drop: float
    drops: dict[str, tuple[float, ...]]          # type -> mean drop at levels 1..max (nan: no row)
    lowest_pristine: tuple[tuple[str, float], ...]
    n_rows_left_out: int


def _srcc(values: np.ndarray, minus_level: np.ndarray) -> float:
    if values.size < 3 or np.ptp(values) == 0 or np.ptp(minus_level) == 0:
        return math.nan
    return float(stats.spearmanr(values, minus_level).statistic)


def diagnose_levels(rows: Sequence[LevelRow], scores: Sequence[float] | np.ndarray, *, higher_is_better: bool,
                    scorer: str = "scorer", n_lowest: int = 3) -> LevelDiagnosis:
    """``scores`` (N,) in the order of ``rows`` (N) -> :class:`LevelDiagnosis` (nan scores left out)."""
    validate_rows(rows)
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != (len(rows),):
        raise ValueError(f"{scorer}: {values.shape} scores for {len(rows)} rows; give exactly one score per row")
    quality = values if higher_is_better else -values
    pristine = {row.ref: quality[i] for i, row in enumerate(rows) if row.level == 0}
    start = np.array([pristine[row.ref] for row in rows])
    keep = np.isfinite(quality) & np.isfinite(start)
    kept = [row for row, k in zip(rows, keep) if k]
    drop = (quality - start)[keep]
    minus_level = -np.array([row.level for row in kept], dtype=np.float64)

    max_level = max((row.level for row in rows), default=0)
    types = list(dict.fromkeys(row.distortion for row in rows if row.level > 0))
    cells: dict[tuple[str, int], list[float]] = {}
    for d, row in zip(drop, kept):
        if row.level > 0:
            cells.setdefault((row.distortion, row.level), []).append(float(d))
    cell_mean = {(t, level): float(np.mean(cells[(t, level)])) if (t, level) in cells else math.nan
                 for t in types for level in range(1, max_level + 1)}
    calibrated = np.array([0.0 if row.level == 0 else cell_mean[(row.distortion, row.level)] for row in kept])

    finite_pristine = {ref: q for ref, q in pristine.items() if np.isfinite(q)}
    worst_drop = -np.array([d for d, row in zip(drop, kept) if row.level == max_level and max_level > 0])
    spread = float(np.std(list(finite_pristine.values()))) if finite_pristine else math.nan
    mean_worst = float(np.mean(worst_drop)) if worst_drop.size else math.nan
    return LevelDiagnosis(
        scorer=scorer,
        pooled_srcc=_srcc(quality[keep], minus_level),
        within_image_srcc=_srcc(drop, minus_level),
        calibration_srcc=_srcc(calibrated, minus_level),
        content_to_drop=spread / mean_worst if mean_worst > 0 else math.nan,
        drops={t: tuple(cell_mean[(t, level)] for level in range(1, max_level + 1)) for t in types},
        lowest_pristine=tuple(sorted(finite_pristine.items(), key=lambda item: item[1])[:n_lowest]),
        n_rows_left_out=int(np.sum(~keep)),
    )


def _cell(value: float, digits: int) -> str:
    # + 0.0 turns a -0.0 left by rounding into 0.0, so a drop of -0.001 reads 0.00, not -0.00
    return format_cell(value if math.isnan(value) else round(value, digits) + 0.0, digits)


def render_diagnosis_table(diagnoses: Sequence[LevelDiagnosis], *, digits: int = 3) -> str:
    """Markdown: rows = :data:`DIAGNOSIS_NUMBERS`, columns = scorers."""
    body = [[label, *(_cell(getattr(d, key), digits) for d in diagnoses)] for key, label in DIAGNOSIS_NUMBERS]
    if any(d.n_rows_left_out for d in diagnoses):
        body.append(["rows left out (nan score or nan pristine)", *(str(d.n_rows_left_out) for d in diagnoses)])
    return markdown_table(["", *(d.scorer for d in diagnoses)], body)


def render_drop_table(diagnosis: LevelDiagnosis, *, digits: int = 2) -> str:
    """Markdown: one row per type, the mean drop from the pristine score at each level, then the lowest
    pristine scores."""
    n_levels = max((len(v) for v in diagnosis.drops.values()), default=0)
    table = markdown_table(["type", *(f"level {level}" for level in range(1, n_levels + 1))],
                           [[distortion, *(_cell(v, digits) for v in drops)]
                            for distortion, drops in diagnosis.drops.items()])
    lines = [f"Mean drop of {diagnosis.scorer}'s quality from the pristine image's, by level "
             "(0 = no change; a small drop at level 5 is a type it barely sees):", "", table]
    if diagnosis.lowest_pristine:
        lines += ["", "Lowest-scored pristine photographs: "
                  + ", ".join(f"{ref.rsplit('/', 1)[-1]} ({_cell(q, 3)})" for ref, q in diagnosis.lowest_pristine)]
    return "\n".join(lines)
