"""Where the pooled SRCC goes: constructed scores whose content and calibration effects are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from perceptiq.evaluation.level_diagnosis import diagnose_levels, render_diagnosis_table, render_drop_table
from perceptiq.evaluation.level_ranking import LevelRow


def make_rows(refs=("A", "B", "C", "D"), types=("blur", "noise")) -> list[LevelRow]:
    rows = []
    for ref in refs:
        rows.append(LevelRow(f"photos/{ref}.png", ref, None, 0))
        rows += [LevelRow(f"photos/{ref}_{t}{level}.png", ref, t, level) for t in types for level in range(1, 6)]
    return rows


def test_content_spread_alone_is_removed_by_the_within_image_number():
    rows = make_rows()
    start = {"A": 0.0, "B": 3.0, "C": 6.0, "D": 9.0}        # photographs far apart, every drop the same
    scores = np.array([start[r.ref] - r.level for r in rows])
    result = diagnose_levels(rows, scores, higher_is_better=True, scorer="content")
    assert result.pooled_srcc < 0.7
    assert result.within_image_srcc == pytest.approx(1.0) and result.calibration_srcc == pytest.approx(1.0)
    assert result.content_to_drop == pytest.approx(np.std([0.0, 3.0, 6.0, 9.0]) / 5.0)
    assert result.drops == {"blur": (-1.0, -2.0, -3.0, -4.0, -5.0), "noise": (-1.0, -2.0, -3.0, -4.0, -5.0)}
    assert [ref for ref, _ in result.lowest_pristine] == ["A", "B", "C"]
    # the direction is honoured: the same numbers from a lower-is-better score
    flipped = diagnose_levels(rows, -scores, higher_is_better=False, scorer="content")
    assert flipped.within_image_srcc == pytest.approx(1.0) and flipped.pooled_srcc == pytest.approx(result.pooled_srcc)


def test_miscalibrated_types_are_not_mended_by_removing_content():
    rows = make_rows()
    # no content effect; noise's level-5 drop (0.5) is smaller than blur's level-1 drop (1)
    scale = {"blur": 1.0, "noise": 0.1}
    scores = np.array([0.0 if r.level == 0 else -scale[r.distortion] * r.level for r in rows])
    result = diagnose_levels(rows, scores, higher_is_better=True)
    # hand ranking per photograph: pristine, noise 1..5, blur 1..5 -> the same pooled numbers three ways
    expected = stats.spearmanr(scores, -np.array([r.level for r in rows])).statistic
    assert expected < 0.8
    assert result.pooled_srcc == pytest.approx(expected)
    assert result.within_image_srcc == pytest.approx(expected) and result.calibration_srcc == pytest.approx(expected)
    assert result.content_to_drop == 0.0
    assert result.drops["noise"] == pytest.approx((-0.1, -0.2, -0.3, -0.4, -0.5))


def test_nan_scores_are_left_out_and_counted_and_tables_render():
    rows = make_rows(refs=("A", "B", "C"))
    scores = np.array([10.0 - r.level for r in rows])
    scores[1] = np.nan                        # A's blur level 1
    scores[11] = np.nan                       # B's pristine: all 11 rows of B go
    result = diagnose_levels(rows, scores, higher_is_better=True, scorer="m")
    assert result.n_rows_left_out == 1 + 11
    assert result.within_image_srcc == pytest.approx(1.0)
    assert [ref for ref, _ in result.lowest_pristine] == ["A", "C"]
    table = render_diagnosis_table([result])
    assert "| pooled SRCC of the drop from each photograph's pristine score (content removed) | 1.000 |" in table
    assert "| rows left out (nan score or nan pristine) | 12 |" in table
    drops = render_drop_table(result)
    assert "| blur | -1.00 | -2.00 | -3.00 | -4.00 | -5.00 |" in drops
    assert "Lowest-scored pristine photographs: A (10.000), C (10.000)" in drops
    with pytest.raises(ValueError, match=r"\(3,\) scores for 33 rows"):
        diagnose_levels(rows, scores[:3], higher_is_better=True)
    constant = diagnose_levels(rows, np.zeros(len(rows)), higher_is_better=True)
    assert math.isnan(constant.pooled_srcc) and math.isnan(constant.content_to_drop)
    backwards = diagnose_levels(rows, np.array([float(r.level) for r in rows]), higher_is_better=True)
    assert backwards.pooled_srcc == pytest.approx(-1.0) and math.isnan(backwards.content_to_drop)  # no drop to divide by
