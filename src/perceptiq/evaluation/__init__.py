"""Metrics, evaluation protocols over splits, and their reports (see docs/evaluation.md)."""

from perceptiq.evaluation.metrics import (
    METRIC_NAMES,
    LogisticFit,
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
from perceptiq.evaluation.protocols import evaluate_cross_dataset, evaluate_on_splits, run_repeated, score_split
from perceptiq.evaluation.report import ProtocolResult, SettingSummary, SplitScore

__all__ = [
    "METRIC_NAMES",
    "LogisticFit",
    "LogisticFitWarning",
    "MetricWarning",
    "ProtocolResult",
    "SettingSummary",
    "SplitScore",
    "compute_metrics",
    "compute_metrics_with_notes",
    "evaluate_cross_dataset",
    "evaluate_on_splits",
    "fit_logistic",
    "krcc",
    "logistic4",
    "logistic5",
    "plcc",
    "plcc_logistic",
    "rmse",
    "run_repeated",
    "score_split",
    "srcc",
]
