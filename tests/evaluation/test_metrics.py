"""Tests of perceptiq.evaluation.metrics: reference values, hand-derived cases, edge cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from perceptiq.evaluation import metrics
from perceptiq.evaluation.metrics import (
    METRIC_NAMES,
    LogisticFitWarning,
    MetricWarning,
    compute_metrics,
    compute_metrics_with_notes,
    fit_logistic,
    krcc,
    logistic4,
    logistic5,
    plcc,
    plcc_logistic,
    rmse,
    srcc,
)


def _noisy_pair(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.uniform(0.0, 1.0, n)
    pred = np.round(target + rng.normal(0.0, 0.15, n), 2)  # rounding creates ties
    return pred, target


def test_plain_metrics_equal_scipy_reference():
    pred, target = _noisy_pair()
    assert len(np.unique(pred)) < len(pred), "the case must contain ties"
    assert srcc(pred, target) == pytest.approx(stats.spearmanr(pred, target).statistic, abs=1e-12)
    assert plcc(pred, target) == pytest.approx(stats.pearsonr(pred, target).statistic, abs=1e-12)
    assert krcc(pred, target) == pytest.approx(stats.kendalltau(pred, target).statistic, abs=1e-12)
    assert rmse(pred, target) == pytest.approx(math.sqrt(np.mean((pred - target) ** 2)), abs=1e-12)
    result = compute_metrics(pred, target)
    assert list(result) == list(METRIC_NAMES)
    assert result["srcc"] == pytest.approx(stats.spearmanr(pred, target).statistic, abs=1e-12)
    assert result["krcc"] == pytest.approx(stats.kendalltau(pred, target).statistic, abs=1e-12)


def test_hand_computed_case_without_ties():
    # pred = 1..5, target = [2, 1, 4, 3, 5]; values equal their ranks.
    # SRCC: d = pred - target = [-1, 1, -1, 1, 0], sum d^2 = 4, rho = 1 - 6*4 / (5*(25-1)) = 0.8.
    # PLCC: dx = [-2,-1,0,1,2], dy = [-1,-2,1,0,2]; sum dx*dy = 2+2+0+0+4 = 8; sum dx^2 = sum dy^2 = 10 -> 0.8.
    # KRCC: 10 pairs; discordant are (2,1) and (4,3) -> Q = 2, P = 8; tau = (8-2)/10 = 0.6.
    # RMSE: sqrt(4 / 5) = sqrt(0.8).
    pred, target = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    result = compute_metrics(pred, target)
    assert result["srcc"] == pytest.approx(0.8, abs=1e-12)
    assert result["plcc"] == pytest.approx(0.8, abs=1e-12)
    assert result["krcc"] == pytest.approx(0.6, abs=1e-12)
    assert result["rmse"] == pytest.approx(math.sqrt(0.8), abs=1e-12)


def test_hand_computed_case_with_a_tie():
    # pred = [1, 1, 2, 3], target = [1, 2, 3, 4].
    # KRCC (tau-b): pair (0,1) tied in pred only (T_x = 1); the other 5 pairs concordant (P = 5, Q = 0);
    #   tau_b = (5 - 0) / sqrt((5 + 0 + 1) * (5 + 0 + 0)) = 5 / sqrt(30).
    # SRCC: ranks pred = [1.5, 1.5, 3, 4], target = [1, 2, 3, 4], both mean 2.5;
    #   dx = [-1, -1, .5, 1.5], dy = [-1.5, -.5, .5, 1.5]; sum dx*dy = 4.5, sum dx^2 = 4.5, sum dy^2 = 5;
    #   rho = 4.5 / sqrt(22.5) = sqrt(0.9).
    pred, target = [1, 1, 2, 3], [1, 2, 3, 4]
    assert krcc(pred, target) == pytest.approx(5 / math.sqrt(30), abs=1e-12)
    assert srcc(pred, target) == pytest.approx(math.sqrt(0.9), abs=1e-12)


def test_rank_metrics_are_invariant_to_monotone_transforms_but_plcc_is_not():
    pred, target = _noisy_pair(seed=1)
    base = compute_metrics(pred, target)
    for transformed in (np.exp(5 * pred), pred**3, 10 * pred - 3):
        moved = compute_metrics(transformed, target)
        assert moved["srcc"] == pytest.approx(base["srcc"], abs=1e-12)
        assert moved["krcc"] == pytest.approx(base["krcc"], abs=1e-12)
    assert abs(compute_metrics(np.exp(5 * pred), target)["plcc"] - base["plcc"]) > 0.01


def test_logistic_plcc_beats_plain_plcc_on_a_monotone_nonlinear_relation():
    rng = np.random.default_rng(2)
    pred = rng.uniform(0.0, 1.0, 300)
    target = 1.0 / (1.0 + np.exp(-12.0 * (pred - 0.4))) + rng.normal(0.0, 0.02, pred.size)
    result = compute_metrics(pred, target)
    assert result["plcc_logistic4"] > result["plcc"] + 0.02
    assert result["plcc_logistic5"] >= result["plcc_logistic4"] - 1e-9  # 5-parameter family is at least as flexible here
    assert result["plcc_logistic4"] > 0.99


@pytest.mark.parametrize(
    ("form", "true_params"),
    [("logistic4", (0.9, 0.1, 0.5, 0.08)), ("logistic5", (0.8, 9.0, 0.45, 0.2, 0.3))],
)
def test_fit_recovers_a_noiseless_curve_in_original_units(form, true_params):
    pred = np.linspace(2.0, 8.0, 60) / 10.0 * 3.0 - 0.5  # not standardised, to exercise the unit conversion
    function = logistic4 if form == "logistic4" else logistic5
    target = function(pred, *true_params)
    fit = fit_logistic(pred, target, form)
    assert fit.converged
    assert np.max(np.abs(fit(pred) - target)) < 1e-6
    assert np.max(np.abs(function(pred, *fit.params) - target)) < 1e-6
    assert plcc_logistic(pred, target, form) == pytest.approx(1.0, abs=1e-9)


def test_logistic_plcc_of_a_reversed_predictor_is_positive():
    pred, target = _noisy_pair(seed=3)
    result = compute_metrics(-pred, target)
    assert result["plcc"] < -0.8
    assert result["srcc"] < -0.8
    assert result["plcc_logistic4"] > 0.8


def test_failed_fit_falls_back_to_identity_with_a_warning(monkeypatch):
    class FailingOptimize:
        OptimizeWarning = metrics.optimize.OptimizeWarning

        @staticmethod
        def curve_fit(*args, **kwargs):
            raise RuntimeError("Optimal parameters not found: forced failure")

    monkeypatch.setattr(metrics, "optimize", FailingOptimize)
    pred, target = _noisy_pair(seed=4)
    with pytest.warns(LogisticFitWarning, match="forced failure"):
        fit = fit_logistic(pred, target)
    assert not fit.converged
    assert np.array_equal(fit(pred), pred)
    values, notes = compute_metrics_with_notes(pred, target)
    assert values["plcc_logistic4"] == pytest.approx(values["plcc"], abs=1e-12)
    assert values["plcc_logistic5"] == pytest.approx(values["plcc"], abs=1e-12)
    assert any("plcc_logistic4" in note and "identity" in note for note in notes)


def test_constant_predictions_give_nan_with_reason_not_an_error():
    target = [0.1, 0.5, 0.3, 0.9]
    values, notes = compute_metrics_with_notes([0.5] * 4, target)
    for name in ("srcc", "plcc", "plcc_logistic4", "plcc_logistic5", "krcc"):
        assert math.isnan(values[name])
    assert values["rmse"] == pytest.approx(math.sqrt(np.mean((0.5 - np.array(target)) ** 2)))
    assert len(notes) == 1 and "predictions are constant" in notes[0]
    with pytest.warns(MetricWarning, match="targets are constant"):
        assert math.isnan(compute_metrics([0.1, 0.2, 0.3], [1.0, 1.0, 1.0])["srcc"])
    with pytest.warns(MetricWarning, match="srcc is nan"):
        assert math.isnan(srcc([1, 1, 1], [1, 2, 3]))


def test_non_finite_pairs_are_omitted_with_a_note_or_raise():
    pred = [1.0, 2.0, float("nan"), 4.0, 5.0, 6.0]
    target = [2.0, 1.0, 3.0, 3.0, 5.0, float("inf")]
    values, notes = compute_metrics_with_notes(pred, target)
    expected, _ = compute_metrics_with_notes([1.0, 2.0, 4.0, 5.0], [2.0, 1.0, 3.0, 5.0])
    assert values["srcc"] == pytest.approx(expected["srcc"])
    assert values["rmse"] == pytest.approx(expected["rmse"])
    assert "omitted 2 of 6 pairs" in notes[0] and "index 2" in notes[0]
    with pytest.raises(ValueError, match="first at index 2"):
        compute_metrics(pred, target, nan_policy="raise")
    with pytest.raises(ValueError, match="first at index 2"):
        plcc(pred, target)


def test_too_few_finite_pairs_after_omission_give_nan():
    values, notes = compute_metrics_with_notes([1.0, float("nan"), 3.0, 4.0], [1.0, 2.0, float("nan"), 4.0])
    assert all(math.isnan(values[name]) for name in METRIC_NAMES)
    assert "only 2 finite pairs remain" in notes[-1]


def test_logistic_needs_as_many_pairs_as_parameters():
    values, notes = compute_metrics_with_notes([1, 2, 3, 4], [1, 3, 2, 4])
    assert math.isfinite(values["plcc_logistic4"])
    assert math.isnan(values["plcc_logistic5"])
    assert any("needs at least 5 pairs, got 4" in note for note in notes)


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        ([1, 2, 3], [1, 2, 3, 4], "3 predictions for 4 targets"),
        ([1, 2], [1, 2], "at least 3"),
        ([[1, 2, 3]], [[1, 2, 3]], "1-D"),
        (["a", "b", "c"], [1, 2, 3], "pred: cannot convert"),
    ],
)
def test_malformed_input_raises_a_clear_error(pred, target, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(pred, target)


def test_unknown_options_are_rejected():
    with pytest.raises(ValueError, match="unknown logistic form"):
        fit_logistic([1, 2, 3, 4], [1, 2, 3, 4], "logistic3")
    with pytest.raises(ValueError, match="nan_policy"):
        compute_metrics([1, 2, 3], [1, 2, 3], nan_policy="ignore")


def test_no_warnings_on_well_behaved_input():
    pred, target = _noisy_pair(seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compute_metrics(pred, target)
