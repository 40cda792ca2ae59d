"""Tests of perceptiq.evaluation.protocols and .report: per-split metrics, summaries, Markdown and CSV."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from perceptiq.data.splits import RANDOM, k_shot_split, make_repeated_splits, random_split, whole_dataset_split
from perceptiq.evaluation.metrics import compute_metrics_with_notes
from perceptiq.evaluation.protocols import evaluate_cross_dataset, evaluate_on_splits, run_repeated
from perceptiq.evaluation.report import ProtocolResult


@dataclass(frozen=True)
class Sample:
    path: Path
    score: float
    ref: str | None = None


def dataset(root: Path, n: int = 60, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    return [Sample(root / f"img_{i:03d}.png", float(score)) for i, score in enumerate(rng.uniform(0, 1, n))]


def noisy_model(samples) -> np.ndarray:
    """Deterministic imperfect predictor: the score plus a path-dependent offset."""
    return np.array([s.score + 0.3 * math.sin(int(s.path.stem[-3:])) for s in samples])


def test_per_split_metrics_and_median_match_a_direct_computation(tmp_path):
    samples = dataset(tmp_path)
    splits = make_repeated_splits(samples, "koniq", RANDOM, 10)
    result = evaluate_on_splits(noisy_model, samples, splits)
    assert len(result.rows) == 10
    expected_srcc = []
    for split, row in zip(splits, result.rows):
        test = [samples[i] for i in split.test]
        expected, _ = compute_metrics_with_notes(noisy_model(test), [s.score for s in test])
        assert row.metrics == pytest.approx(expected)
        assert (row.seed, row.n_train, row.n_test) == (split.seed, 48, 12)
        expected_srcc.append(expected["srcc"])
    assert result.median["srcc"] == pytest.approx(float(np.median(expected_srcc)))
    assert result.mean["srcc"] == pytest.approx(float(np.mean(expected_srcc)))
    assert result.std["srcc"] == pytest.approx(float(np.std(expected_srcc, ddof=1)))
    assert len({row.metrics["srcc"] for row in result.rows}) > 1, "splits must differ for the median to mean anything"


def test_predict_once_gives_the_same_result_with_one_call(tmp_path):
    samples = dataset(tmp_path)
    splits = make_repeated_splits(samples, "koniq", RANDOM, 5)
    calls = []

    def counting_model(batch):
        calls.append(len(batch))
        return noisy_model(batch)

    once = evaluate_on_splits(counting_model, samples, splits, predict_once=True)
    assert len(calls) == 1
    assert calls[0] == len({i for split in splits for i in split.test})
    per_split = evaluate_on_splits(noisy_model, samples, splits)
    assert [row.metrics for row in once.rows] == [row.metrics for row in per_split.rows]


def test_wrong_prediction_shape_names_the_split(tmp_path):
    samples = dataset(tmp_path)
    split = random_split(samples, "koniq", 2)
    with pytest.raises(ValueError, match=r"split koniq/random\(train_fraction=0.8\)/seed=2: predictions have shape \(12, 1\)"):
        evaluate_on_splits(lambda batch: np.zeros((len(batch), 1)), samples, [split])


def test_run_repeated_trains_on_the_train_part_and_scores_the_test_part(tmp_path):
    samples = dataset(tmp_path)
    splits = make_repeated_splits(samples, "koniq", RANDOM, 3)
    seen = []

    def train_and_predict(train, test):
        assert {s.path for s in train}.isdisjoint(s.path for s in test)
        seen.append((len(train), len(test)))
        offset = float(np.mean([s.score for s in train]))  # "training" shifts predictions; SRCC ignores it
        return np.array([s.score for s in test]) ** 2 + offset

    printed = []
    result = run_repeated(train_and_predict, samples, splits, on_split=printed.append)
    assert seen == [(48, 12)] * 3
    assert printed == list(result.rows)
    assert all(row.metrics["srcc"] == pytest.approx(1.0) for row in result.rows)
    assert all(row.metrics["plcc"] < 1.0 for row in result.rows)
    with pytest.raises(ValueError, match="has no training samples"):
        run_repeated(train_and_predict, samples, [whole_dataset_split(samples, "koniq")])


def test_undefined_split_is_noted_and_left_out_of_the_summary(tmp_path):
    samples = dataset(tmp_path)
    splits = make_repeated_splits(samples, "koniq", RANDOM, 3)
    constant_on_seed_1 = set(splits[1].test)

    def model(batch):
        if {samples.index(s) for s in batch} == constant_on_seed_1:
            return np.full(len(batch), 0.5)
        return noisy_model(batch)

    result = evaluate_on_splits(model, samples, splits)
    assert math.isnan(result.rows[1].metrics["srcc"])
    assert "predictions are constant" in result.rows[1].notes[0]
    defined = [result.rows[0].metrics["srcc"], result.rows[2].metrics["srcc"]]
    assert result.median["srcc"] == pytest.approx(float(np.median(defined)))
    assert "srcc: 1 of 3 splits undefined, left out" in result.summaries[0].notes


def test_settings_are_summarised_separately(tmp_path):
    samples = dataset(tmp_path, 120)
    bases = make_repeated_splits(samples, "koniq", RANDOM, 3)
    splits = [k_shot_split(b, 10) for b in bases] + [k_shot_split(b, 40) for b in bases]
    result = evaluate_on_splits(noisy_model, samples, splits)
    assert [(s.params["k"], s.n_splits) for s in result.summaries] == [(10, 3), (40, 3)]
    assert result.summaries[1].median["srcc"] == pytest.approx(float(np.median([r.metrics["srcc"] for r in result.rows[3:]])))
    with pytest.raises(ValueError, match="holds 2 settings"):
        result.median


def test_cross_dataset_scores_every_sample_of_each_target(tmp_path):
    targets = {"livec": dataset(tmp_path / "livec", 20, 1), "koniq": dataset(tmp_path / "koniq", 30, 2)}
    result = evaluate_cross_dataset(noisy_model, targets)
    assert [(r.dataset, r.n_train, r.n_test) for r in result.rows] == [("livec", 0, 20), ("koniq", 0, 30)]
    expected, _ = compute_metrics_with_notes(noisy_model(targets["koniq"]), [s.score for s in targets["koniq"]])
    assert result.rows[1].metrics == pytest.approx(expected)


def test_markdown_and_csv_reports(tmp_path):
    samples = dataset(tmp_path)
    result = evaluate_on_splits(noisy_model, samples, make_repeated_splits(samples, "koniq", RANDOM, 4))
    markdown = result.to_markdown(digits=3)
    lines = markdown.strip().splitlines()
    assert lines[0].startswith("| dataset | mode | params | seed | n_train | n_test | SRCC | PLCC | PLCC (logistic-4)")
    assert len(lines) == 2 + 4 + 3  # header, rule, 4 splits, median/mean/std
    median_line = next(line for line in lines if "**median of 4**" in line)
    assert f"**{result.median['srcc']:.3f}**" in median_line

    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert [r["row"] for r in rows] == ["split"] * 4 + ["median", "mean", "std"]
    assert float(rows[4]["srcc"]) == result.median["srcc"]
    assert float(rows[0]["plcc_logistic5"]) == result.rows[0].metrics["plcc_logistic5"]
    assert rows[0]["params"] == '{"train_fraction": 0.8}'

    result.write(tmp_path / "report" / "koniq.csv")
    assert (tmp_path / "report" / "koniq.csv").read_text() == result.to_csv()
    with pytest.raises(ValueError, match="unknown report format"):
        result.write(tmp_path / "koniq.txt")


def test_empty_inputs_are_rejected(tmp_path):
    samples = dataset(tmp_path)
    with pytest.raises(ValueError, match="no splits given"):
        evaluate_on_splits(noisy_model, samples, [])
    with pytest.raises(ValueError, match="has no test samples"):
        evaluate_on_splits(noisy_model, samples, [whole_dataset_split(samples, "koniq", role="train")])
    with pytest.raises(ValueError, match="at least one split"):
        ProtocolResult(rows=())


def test_a_single_split_report_does_not_repeat_its_row_as_median_mean_std(tmp_path):
    """Issue 14 item 12: one split is its own result; the Markdown has no "median/mean/std of 1" rows (the
    CSV keeps them, so a reader finds a setting's median the same way for any number of splits)."""
    samples = dataset(tmp_path)
    one = evaluate_on_splits(noisy_model, samples, make_repeated_splits(samples, "koniq", RANDOM, 1))
    lines = one.to_markdown().strip().splitlines()
    assert len(lines) == 2 + 1 and "of 1" not in one.to_markdown()
    assert [r["row"] for r in csv.DictReader(io.StringIO(one.to_csv()))] == ["split", "median", "mean", "std"]
    two = evaluate_on_splits(noisy_model, samples, make_repeated_splits(samples, "koniq", RANDOM, 2))
    assert len(two.to_markdown().strip().splitlines()) == 2 + 2 + 3 and "**median of 2**" in two.to_markdown()
