"""Evaluation protocols: score a model on the test parts of a list of splits.

Models enter only as callables, so this module knows nothing about networks:

* ``predict(samples) -> array (M,)`` -- a fixed model (zero-shot, or already trained);
* ``train_and_predict(train_samples, test_samples) -> array (M,)`` -- trains a fresh model on the
  train part of one split and returns its scores for that split's test part (training recipes).

Both return a :class:`~perceptiq.evaluation.report.ProtocolResult`: one row per split and the
median/mean/std per setting. Targets are the samples' ``.score``.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence, TypeVar

import numpy as np

from perceptiq.data.splits import SampleLike, Split, whole_dataset_split
from perceptiq.evaluation.metrics import NanPolicy, compute_metrics_with_notes
from perceptiq.evaluation.report import ProtocolResult, SplitScore

S = TypeVar("S", bound=SampleLike)
PredictFn = Callable[[Sequence[S]], np.ndarray]
TrainAndPredictFn = Callable[[list[S], list[S]], np.ndarray]


def _targets(samples: Sequence[SampleLike], where: str) -> np.ndarray:
    """Subjective scores of ``samples``, shape (M,); a missing score is an error naming the sample."""
    scores = []
    for sample in samples:
        score = getattr(sample, "score", None)
        if score is None:
            raise ValueError(f"{where}: sample {getattr(sample, 'path', sample)} has no score")
        scores.append(float(score))
    return np.asarray(scores, dtype=np.float64)


def _predictions(values, expected: int, where: str) -> np.ndarray:
    """The callable's output as a float vector of shape (expected,), or a clear error."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: predictions are not numbers ({error})") from error
    if array.shape != (expected,):
        raise ValueError(f"{where}: predictions have shape {array.shape}, expected ({expected},) -- one score per test sample")
    return array


def score_split(split: Split, test_samples: Sequence[SampleLike], predictions, n_train: int, *, nan_policy: NanPolicy = "omit") -> SplitScore:
    """Metrics of ``predictions`` (M,) against the scores of ``test_samples`` (M samples) for one split."""
    where = f"split {split.label}"
    predicted = _predictions(predictions, len(test_samples), where)
    metrics, notes = compute_metrics_with_notes(predicted, _targets(test_samples, where), nan_policy=nan_policy)
    return SplitScore(
        dataset=split.dataset,
        mode=split.mode,
        seed=split.seed,
        params=dict(split.params),
        n_train=n_train,
        n_test=len(test_samples),
        metrics=metrics,
        notes=tuple(notes),
    )


def _check_splits(splits: Sequence[Split]) -> None:
    if not splits:
        raise ValueError("no splits given")
    for split in splits:
        if not split.test:
            raise ValueError(f"split {split.label} has no test samples; nothing to evaluate")


def evaluate_on_splits(
    predict: PredictFn,
    samples: Sequence[S],
    splits: Sequence[Split],
    *,
    predict_once: bool = False,
    root=None,
    nan_policy: NanPolicy = "omit",
) -> ProtocolResult:
    """Score a fixed model on the test part of every split.

    Args:
        predict: ``predict(test_samples) -> (M,)`` scores in the order given.
        samples: the dataset the splits were made from (checked by fingerprint, see ``Split.resolve``).
        splits: splits of that dataset.
        predict_once: call ``predict`` a single time on the union of all test parts and reuse the
            scores (for a deterministic model; saves recomputing overlapping test parts).
        root: root passed to ``Split.resolve`` (default: the samples' common folder).
        nan_policy: passed to :func:`~perceptiq.evaluation.metrics.compute_metrics_with_notes`.
    """
    _check_splits(splits)
    resolved = [split.resolve(samples, root) for split in splits]
    cached: dict[int, float] = {}
    if predict_once:
        union = sorted({index for _, test in resolved for index in test})
        scores = _predictions(predict([samples[i] for i in union]), len(union), "predict on the union of test parts")
        cached = dict(zip(union, scores.tolist()))

    rows = []
    for split, (train, test) in zip(splits, resolved):
        test_samples = [samples[i] for i in test]
        predictions = [cached[i] for i in test] if predict_once else predict(test_samples)
        rows.append(score_split(split, test_samples, predictions, n_train=len(train), nan_policy=nan_policy))
    return ProtocolResult(rows=tuple(rows))


def run_repeated(
    train_and_predict: TrainAndPredictFn,
    samples: Sequence[S],
    splits: Sequence[Split],
    *,
    root=None,
    nan_policy: NanPolicy = "omit",
    on_split: Callable[[SplitScore], None] | None = None,
) -> ProtocolResult:
    """Train a fresh model per split and score it on that split's test part.

    Args:
        train_and_predict: ``(train_samples, test_samples) -> (M,)`` scores for ``test_samples``.
        samples: the dataset the splits were made from.
        splits: e.g. ten ``random`` splits (Gamma) or ten ``k_shot`` splits (GRMP-IQA Table 1).
        on_split: called with each split's row as soon as it is scored (progress logging).
    """
    _check_splits(splits)
    rows = []
    for split in splits:
        if not split.train:
            raise ValueError(f"split {split.label} has no training samples; use evaluate_on_splits for a fixed model")
        parts = split.apply(samples, root)
        predictions = train_and_predict(parts.train, parts.test)
        row = score_split(split, parts.test, predictions, n_train=len(parts.train), nan_policy=nan_policy)
        if on_split is not None:
            on_split(row)
        rows.append(row)
    return ProtocolResult(rows=tuple(rows))


def evaluate_cross_dataset(
    predict: PredictFn, test_sets: Mapping[str, Sequence[S]], *, nan_policy: NanPolicy = "omit"
) -> ProtocolResult:
    """Score a fixed model on every sample of each named dataset (zero-shot or trained elsewhere).

    One row per dataset; train on the source dataset first (e.g. with its ``whole_train`` split).
    """
    if not test_sets:
        raise ValueError("no test datasets given")
    rows = []
    for name, samples in test_sets.items():
        split = whole_dataset_split(samples, name, role="test")
        rows.extend(evaluate_on_splits(predict, samples, [split], nan_policy=nan_policy).rows)
    return ProtocolResult(rows=tuple(rows))
