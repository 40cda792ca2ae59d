"""The distortion-level protocol on constructed scores whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from perceptiq.evaluation.level_ranking import (
    ISSUE11_BARS,
    Bars,
    LevelRow,
    beats,
    evaluate_level_ranking,
    evaluate_scorers,
    render_per_type_table,
    render_summary_table,
    rows_from_synthetic,
)

ONE_SWAP = 1 - 6 * 2 / (6 * 35)   # SRCC of 6 ranks with one adjacent pair swapped: 1 - 6·Σd² / (n(n²-1))


def make_rows(refs=("A", "B", "C"), types=("blur", "noise"), levels=(1, 2, 3, 4, 5)) -> list[LevelRow]:
    rows = []
    for ref in refs:
        rows.append(LevelRow(f"{ref}/pristine.png", ref, None, 0))
        for distortion in types:
            rows += [LevelRow(f"{ref}/{distortion}_{level}.png", ref, distortion, level) for level in levels]
    return rows


def scores_from(rows, table):
    """``table[(ref, distortion)]`` = qualities at levels 1..5; the pristine gets ``table[(ref, None)]``."""
    return np.array([table[(row.ref, row.distortion)] if row.level == 0 else table[(row.ref, row.distortion)][row.level - 1]
                     for row in rows], dtype=np.float64)


def test_a_perfect_measure_gets_plus_one_everywhere_in_either_direction():
    rows = make_rows()
    level = np.array([row.level for row in rows], dtype=float)
    for scores, higher in [(-level, True), (level, False), (10 - 2 * level, True)]:
        result = evaluate_level_ranking(rows, scores, higher_is_better=higher)
        assert result.pooled_srcc == pytest.approx(1.0) and result.pooled_plcc == pytest.approx(1.0)
        assert result.pooled_krcc == pytest.approx(1.0)
        assert result.n_types_at_least == 2 and result.min_type_median == pytest.approx(1.0)
        assert (result.pristine_wins, result.pristine_pairs) == (3 * 2 * 3, 18)
        assert result.pristine_win_rate == 1.0 and not result.notes
    reversed_result = evaluate_level_ranking(rows, level, higher_is_better=True)   # says worse is better
    assert reversed_result.pooled_srcc == pytest.approx(-1.0) and reversed_result.pristine_wins == 0
    assert reversed_result.min_type_median == pytest.approx(-1.0) and reversed_result.n_types_at_least == 0


def test_hand_computed_medians_wins_and_ties():
    rows = make_rows()
    table = {
        ("A", None): 10, ("A", "blur"): [9, 8, 7, 6, 5],   # perfect: SRCC 1, 3 wins
        ("B", None): 10, ("B", "blur"): [11, 8, 7, 6, 5],  # pristine/level-1 swapped: ONE_SWAP, 3 wins
        ("C", None): 0, ("C", "blur"): [1, 2, 3, 4, 5],    # reversed: -1, 0 wins
        ("A", "noise"): [9, 8, 10, 6, 5],                  # level 3 ties the pristine: a failure; SRCC from ranks
        ("B", "noise"): [9, 8, 7, 5, 6],                   # levels 4/5 swapped: ONE_SWAP, 3 wins
        ("C", "noise"): [-1, -2, -3, -4, -5],              # perfect, 3 wins
    }
    result = evaluate_level_ranking(rows, scores_from(rows, table), higher_is_better=True, scorer="made-up")
    blur, noise = result.per_type["blur"], result.per_type["noise"]
    assert blur.srcc_by_ref == pytest.approx({"A": 1.0, "B": ONE_SWAP, "C": -1.0})
    assert blur.median_srcc == pytest.approx(ONE_SWAP)
    # A/noise qualities 10, 9, 8, 10, 6, 5 at levels 0..5: ranks of quality 5.5, 4, 3, 5.5, 2, 1 against
    # ranks of -level 6, 5, 4, 3, 2, 1 -> deviations from 3.5: (2, .5, -.5, 2, -1.5, -2.5) and
    # (2.5, 1.5, .5, -.5, -1.5, -2.5): Pearson of the ranks = 13 / sqrt(17 · 17.5)
    a_noise = 13 / math.sqrt(17 * 17.5)
    assert noise.srcc_by_ref["A"] == pytest.approx(a_noise, rel=1e-12)
    assert noise.median_srcc == pytest.approx(ONE_SWAP)     # median of (0.75, 0.94, 1)
    assert (blur.pristine_wins, blur.pristine_pairs) == (6, 9)
    assert (noise.pristine_wins, noise.pristine_pairs) == (8, 9)   # the tie at A/noise/3 is a failure
    assert (result.pristine_wins, result.pristine_pairs) == (14, 18)
    assert result.n_types_at_least == 2 and result.min_type_median == pytest.approx(ONE_SWAP)
    assert result.median_type_median == pytest.approx(ONE_SWAP)


def test_pooled_srcc_hand_case_and_row_order_does_not_matter():
    rows = make_rows(refs=("A",), types=("blur",))
    scores = np.array([6, 5, 4, 3, 1, 2], dtype=float)     # levels 0..5, levels 4 and 5 swapped
    result = evaluate_level_ranking(rows, scores, higher_is_better=True)
    assert result.pooled_srcc == pytest.approx(ONE_SWAP)
    # Kendall: 15 pairs, one discordant -> (14 - 1) / 15
    assert result.pooled_krcc == pytest.approx(13 / 15)
    order = [3, 0, 5, 1, 4, 2]
    shuffled = evaluate_level_ranking([rows[i] for i in order], scores[order], higher_is_better=True)
    assert shuffled.summary() == pytest.approx(result.summary(), rel=1e-12)


def test_nan_scores_are_counted_not_silently_dropped():
    rows = make_rows()
    level = np.array([row.level for row in rows], dtype=float)
    scores = -level
    noise_b2 = next(i for i, row in enumerate(rows) if (row.ref, row.distortion, row.level) == ("B", "noise", 2))
    pristine_c = next(i for i, row in enumerate(rows) if (row.ref, row.level) == ("C", 0))
    scores[[noise_b2, pristine_c]] = np.nan
    result = evaluate_level_ranking(rows, scores, higher_is_better=True)
    assert [index for index, _ in result.nan_rows] == sorted([noise_b2, pristine_c])
    assert result.per_type["noise"].n_groups_incomplete == 2   # B (a level) and C (its pristine)
    assert result.per_type["blur"].n_groups_incomplete == 1    # C
    assert result.n_groups_incomplete == 3
    assert result.pristine_pairs == 18 - 6 and result.n_pairs_incomplete == 6   # C's 2 types x 3 levels
    assert result.pooled_srcc == pytest.approx(1.0)
    assert any("2 of 33 rows have no score" in note for note in result.notes)
    table = render_summary_table([result])
    assert "| rows without a score (nan) | 2 |" in table
    assert "| (image, type) groups left out (nan) / constant (SRCC 0) | 3 / 0 |" in table
    assert "| pristine pairs left out (nan) | 6 |" in table


def test_constant_scores_in_a_group_count_as_zero_and_are_reported():
    rows = make_rows(refs=("A", "B", "C"), types=("blur",))
    scores = np.array([5.0] * len(rows))
    result = evaluate_level_ranking(rows, scores, higher_is_better=True)
    assert result.per_type["blur"].srcc_by_ref == {"A": 0.0, "B": 0.0, "C": 0.0}
    assert result.n_groups_constant == 3
    assert result.pristine_wins == 0 and result.pristine_pairs == 9   # ties are failures
    assert result.pooled_srcc == 0.0


def test_a_type_without_any_complete_group_has_nan_median_and_nan_minimum():
    rows = make_rows(refs=("A",), types=("blur", "noise"))
    scores = -np.array([row.level for row in rows], dtype=float)
    scores[[i for i, row in enumerate(rows) if row.distortion == "noise" and row.level == 1]] = np.nan
    result = evaluate_level_ranking(rows, scores, higher_is_better=True)
    assert math.isnan(result.per_type["noise"].median_srcc)
    assert math.isnan(result.min_type_median) and result.n_types_at_least == 1
    assert result.meets(ISSUE11_BARS)["min_type_median"] is False


def test_bad_input_is_refused_with_the_row():
    rows = make_rows(refs=("A",), types=("blur",))
    with pytest.raises(ValueError, match="duplicate blur level 2 of reference 'A'"):
        evaluate_level_ranking(rows + [rows[2]], np.zeros(len(rows) + 1), higher_is_better=True)
    with pytest.raises(ValueError, match="reference 'A' has distorted versions but no pristine row"):
        evaluate_level_ranking(rows[1:], np.zeros(len(rows) - 1), higher_is_better=True)
    with pytest.raises(ValueError, match="level 0 is the pristine image and has no distortion"):
        evaluate_level_ranking([LevelRow("x", "A", "blur", 0)], [1.0], higher_is_better=True)
    with pytest.raises(ValueError, match="needs a distortion type"):
        evaluate_level_ranking([LevelRow("p", "A", None, 0), LevelRow("x", "A", None, 2)], [1.0, 0.0],
                               higher_is_better=True)
    with pytest.raises(ValueError, match=r"nets: \(5,\) scores for 6 rows"):
        evaluate_level_ranking(rows, np.zeros(5), higher_is_better=True, scorer="nets")


def test_tables_side_by_side_bars_and_beats():
    rows = make_rows()
    level = np.array([row.level for row in rows], dtype=float)
    worse = -level + np.where(np.arange(len(rows)) % 4 == 1, 2.5, 0.0)
    worse[0] = -10.0                       # reference A's pristine below all of A's versions: 6 of 18 pairs lost
    results = evaluate_scorers(rows, {"perfect": (level, False), "worse": (worse, True)})
    assert [r.scorer for r in results] == ["perfect", "worse"]
    bars = Bars(n_types_at_least=2)
    table = render_summary_table(results, bars=bars)
    lines = table.splitlines()
    assert lines[0].startswith("3 reference images, 2 distortion types, 33 images")
    assert "| perfect (lower = better) | worse (higher = better) | bar |" in lines[2]
    assert "| pooled SRCC (quality vs -level, all types) | 1.000 | " in table
    assert "| types with median within-image SRCC >= 0.7 | 2 / 2 | " in table
    assert "| pristine scored strictly better than levels 3/4/5 | 1.000 (18/18) | 0.667 (12/18) ✗ | >= 0.95 |" in table
    assert "| min over types of median within-image SRCC | 1.000 | " in table and "| > 0 |" in table
    per_type = render_per_type_table(results)
    assert per_type.splitlines()[0] == ("| type | perfect: median SRCC / pristine > 3/4/5 | "
                                        "worse: median SRCC / pristine > 3/4/5 |")
    assert per_type.splitlines()[2].startswith("| blur | 1.000 / 1.00 | ")
    comparison = beats(results[0], results[1])
    assert comparison["pooled_srcc"] and comparison["pristine_win_rate"] and comparison["min_type_median"]
    assert not any(beats(results[0], results[0]).values())     # equal is not better
    assert results[1].meets(bars) == {"pooled_srcc": results[1].pooled_srcc >= 0.8, "n_types_at_least": True,
                                      "min_type_median": True, "pristine_win_rate": False}
    other = evaluate_level_ranking(make_rows(refs=("A",)), np.zeros(11), higher_is_better=True)
    with pytest.raises(ValueError, match="different rows"):
        render_summary_table([results[0], other])
    assert Bars(pooled_srcc=None).met("pooled_srcc", 0.1) is None


def test_rows_from_a_synthesized_dataset_end_to_end(tmp_path):
    """synthesize -> rows -> scores of a classical measure -> the protocol and its tables."""
    from perceptiq.classical import LaplacianVariance
    from perceptiq.data.synthetic import synthesize

    source = tmp_path / "photos"
    source.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:80]
    for k in range(2):
        base = 120 + 80 * np.sin(xx / (3 + k)) * np.cos(yy / 5) + rng.normal(0, 5, (64, 80))
        Image.fromarray(np.clip(np.stack([base] * 3, -1), 0, 255).astype(np.uint8)).save(source / f"p{k}.png")
    csv_path = synthesize(source, tmp_path / "synthetic", types=["gaussian_blur", "jpeg"], seed=0)
    rows = rows_from_synthetic(csv_path)
    assert len(rows) == 2 * (1 + 2 * 5)
    assert rows[0] == LevelRow(str(tmp_path / "synthetic" / "reference" / "p0.png"),
                               str(tmp_path / "synthetic" / "reference" / "p0.png"), None, 0)
    assert rows[1].distortion == "gaussian_blur" and rows[1].level == 1 and rows[1].ref == rows[0].path
    measure = LaplacianVariance()
    scored = measure.score_many(row.path for row in rows)
    assert scored.n_failed == 0
    result = evaluate_level_ranking(rows, scored.scores, higher_is_better=measure.higher_is_better,
                                    scorer=measure.name)
    assert result.per_type["gaussian_blur"].median_srcc == pytest.approx(1.0)   # blur always lowers it
    assert result.n_refs == 2 and result.types == ("gaussian_blur", "jpeg")
    assert "laplacian_variance (higher = better)" in render_summary_table([result])


def test_rows_from_synthetic_reports_bad_rows(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,score,ref,distortion,level,scene\n"
                        "distorted/a/blur_1.png,0.9,reference/a.png,blur,1,natural\n"
                        "distorted/a/blur_2.png,0.8,reference/a.png,blur,two,natural\n")
    with pytest.raises(ValueError, match=r"labels.csv row 3: level 'two' is not an integer"):
        rows_from_synthetic(csv_path)
    csv_path.write_text("path,score\nx.png,1\n")
    with pytest.raises(ValueError, match=r"missing columns \['ref', 'distortion', 'level'\]"):
        rows_from_synthetic(csv_path)
