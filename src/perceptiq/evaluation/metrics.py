"""Agreement between predicted scores and subjective scores (MOS/DMOS).

Every function takes two 1-D sequences of equal length N:

* ``pred``   -- shape (N,), the model's scores;
* ``target`` -- shape (N,), the subjective scores of the same items, same order.

Metrics (formulas and sources are in docs/evaluation.md):

* SRCC -- Spearman rank-order correlation (Pearson correlation of average ranks; ties share a rank).
* PLCC -- Pearson linear correlation of the raw scores.
* PLCC after a nonlinear logistic mapping of ``pred`` onto ``target``:
    - 4 parameters (VQEG FR-TV Phase I final report, 2000):
      ``f(x) = b2 + (b1 - b2) / (1 + exp(-(x - b3) / |b4|))``
    - 5 parameters (Sheikh, Sabir & Bovik, IEEE TIP 15(11), 2006):
      ``f(x) = b1 * (1/2 - 1 / (1 + exp(b2 * (x - b3)))) + b4 * x + b5``
* KRCC -- Kendall rank correlation, tau-b (ties corrected).
* RMSE -- root mean squared error of the raw scores (both sides on the same scale, e.g. [0, 1]).

Undefined cases do not raise: a constant input makes every correlation ``nan`` and the reason is
reported as a note (:func:`compute_metrics_with_notes`) or as an :class:`MetricWarning`
(:func:`compute_metrics`). Malformed input (different lengths, not 1-D, fewer than 3 items) raises
``ValueError``.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from scipy import optimize, special, stats

#: Keys of the dict returned by :func:`compute_metrics`, in report order.
METRIC_NAMES: tuple[str, ...] = ("srcc", "plcc", "plcc_logistic4", "plcc_logistic5", "krcc", "rmse")

#: Metrics that are correlations (undefined for a constant input).
CORRELATION_NAMES: tuple[str, ...] = ("srcc", "plcc", "plcc_logistic4", "plcc_logistic5", "krcc")

#: A correlation between fewer items than this is not meaningful (2 points always give |r| = 1).
MIN_ITEMS = 3

LogisticForm = Literal["logistic4", "logistic5"]
NanPolicy = Literal["omit", "raise"]


class MetricWarning(RuntimeWarning):
    """A metric is ``nan`` (undefined for this input) or was computed on fewer pairs; the message says why."""


class LogisticFitWarning(RuntimeWarning):
    """The logistic fit did not converge; the identity mapping was used instead (the message says why)."""


# ----------------------------------------------------------------------------------------------
# input validation
# ----------------------------------------------------------------------------------------------


def _as_vector(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """Convert ``values`` to a float64 vector of shape (N,), or raise naming the argument."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: cannot convert to an array of numbers ({error})") from error
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of scores, got an array of shape {array.shape}")
    return array


def validate_pair(pred: Sequence[float] | np.ndarray, target: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(pred, target)`` as float64 vectors of shape (N,) after checking N matches and N >= 3.

    Non-finite values are allowed here; :func:`compute_metrics_with_notes` decides what to do with them.
    """
    pred_vec = _as_vector(pred, "pred")
    target_vec = _as_vector(target, "target")
    if pred_vec.shape != target_vec.shape:
        raise ValueError(
            f"pred and target differ in length: {pred_vec.shape[0]} predictions for {target_vec.shape[0]} targets"
        )
    if pred_vec.shape[0] < MIN_ITEMS:
        raise ValueError(f"need at least {MIN_ITEMS} (pred, target) pairs to compute correlations, got {pred_vec.shape[0]}")
    return pred_vec, target_vec


def _constant_reason(pred: np.ndarray, target: np.ndarray) -> str | None:
    """Why correlations are undefined for this clean pair, or None when they are defined."""
    if np.ptp(pred) == 0:
        return f"predictions are constant (all {pred.shape[0]} equal {pred[0]:.6g})"
    if np.ptp(target) == 0:
        return f"targets are constant (all {target.shape[0]} equal {target[0]:.6g})"
    return None


# ----------------------------------------------------------------------------------------------
# plain metrics (inputs: finite, same length, not constant -- checked by the callers below)
# ----------------------------------------------------------------------------------------------


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r = sum(dx*dy) / sqrt(sum(dx^2) * sum(dy^2)), dx = x - mean(x); clipped to [-1, 1]."""
    dx = x - x.mean()
    dy = y - y.mean()
    denominator = math.sqrt(float(np.dot(dx, dx)) * float(np.dot(dy, dy)))
    if denominator == 0.0:
        return math.nan
    return float(np.clip(np.dot(dx, dy) / denominator, -1.0, 1.0))


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rho = Pearson r of the average ranks (ties get the mean of the ranks they span)."""
    return _pearson(stats.rankdata(x, method="average"), stats.rankdata(y, method="average"))


def _kendall(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall tau-b = (P - Q) / sqrt((P + Q + T_x) (P + Q + T_y)) (ties only in x: T_x; only in y: T_y)."""
    return float(stats.kendalltau(x, y, variant="b").statistic)


def _rmse(x: np.ndarray, y: np.ndarray) -> float:
    """sqrt(mean((x - y)^2))."""
    return float(np.sqrt(np.mean((x - y) ** 2)))


def _clean_or_raise(pred, target) -> tuple[np.ndarray, np.ndarray]:
    """Validate for the single-metric functions: same length, >= 3 items, all finite."""
    pred_vec, target_vec = validate_pair(pred, target)
    bad = ~(np.isfinite(pred_vec) & np.isfinite(target_vec))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{int(bad.sum())} non-finite value(s), first at index {first} "
            f"(pred={pred_vec[first]}, target={target_vec[first]}); use compute_metrics to omit them"
        )
    return pred_vec, target_vec


def _correlation_or_nan(function, pred, target, name: str) -> float:
    pred_vec, target_vec = _clean_or_raise(pred, target)
    reason = _constant_reason(pred_vec, target_vec)
    if reason is not None:
        warnings.warn(f"{name} is nan: {reason}", MetricWarning, stacklevel=3)
        return math.nan
    return function(pred_vec, target_vec)


def srcc(pred, target) -> float:
    """Spearman rank-order correlation of ``pred`` (N,) and ``target`` (N,); nan (with a warning) if constant."""
    return _correlation_or_nan(_spearman, pred, target, "srcc")


def plcc(pred, target) -> float:
    """Pearson linear correlation of the raw scores (N,) and (N,); nan (with a warning) if constant."""
    return _correlation_or_nan(_pearson, pred, target, "plcc")


def krcc(pred, target) -> float:
    """Kendall tau-b of ``pred`` (N,) and ``target`` (N,); nan (with a warning) if constant."""
    return _correlation_or_nan(_kendall, pred, target, "krcc")


def rmse(pred, target) -> float:
    """Root mean squared error of the raw scores (N,) and (N,); defined for constant inputs too."""
    pred_vec, target_vec = _clean_or_raise(pred, target)
    return _rmse(pred_vec, target_vec)


# ----------------------------------------------------------------------------------------------
# logistic mappings (VQEG 4-parameter, Sheikh et al. 5-parameter)
# ----------------------------------------------------------------------------------------------


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG FR-TV Phase I 4-parameter logistic: ``b2 + (b1 - b2) / (1 + exp(-(x - b3) / |b4|))``.

    ``b1``/``b2`` are the upper/lower asymptotes, ``b3`` the midpoint, ``|b4|`` the width. Shape of ``x``
    is kept. Written with ``expit(t) = 1 / (1 + exp(-t))`` so large |t| does not overflow.
    """
    return b2 + (b1 - b2) * special.expit((np.asarray(x, dtype=np.float64) - b3) / abs(b4))


def logistic5(x: np.ndarray, b1: float, b2: float, b3: float, b4: float, b5: float) -> np.ndarray:
    """Sheikh et al. (2006) 5-parameter logistic: ``b1 * (1/2 - 1 / (1 + exp(b2 * (x - b3)))) + b4 * x + b5``.

    Uses the identity ``1/2 - 1 / (1 + exp(t)) = expit(t) - 1/2``. Shape of ``x`` is kept.
    """
    x = np.asarray(x, dtype=np.float64)
    return b1 * (special.expit(b2 * (x - b3)) - 0.5) + b4 * x + b5


_LOGISTIC_FUNCTIONS = {"logistic4": logistic4, "logistic5": logistic5}
_LOGISTIC_N_PARAMS = {"logistic4": 4, "logistic5": 5}

# Initial widths (in units of std(pred)) tried by the multi-start fit: steep, medium, nearly linear.
# Several starts because a single one can stop in a local optimum worse than the linear fit.
_START_WIDTHS = (0.25, 1.0, 4.0)
_MAX_FUNCTION_EVALUATIONS = 20_000


@dataclass(frozen=True)
class LogisticFit:
    """A fitted monotone mapping from predictions onto the target scale.

    ``params`` are in the units of the original predictions (not the standardised ones used while
    fitting). When ``converged`` is False the mapping is the identity and ``message`` says why.
    """

    form: str
    params: tuple[float, ...]
    converged: bool
    message: str = ""

    def __call__(self, x) -> np.ndarray:
        """Map predictions ``x`` (any shape) onto the target scale."""
        if not self.converged:
            return np.asarray(x, dtype=np.float64)
        return _LOGISTIC_FUNCTIONS[self.form](x, *self.params)


def _initial_guesses(form: str, z: np.ndarray, y: np.ndarray) -> list[list[float]]:
    """Starting points for standardised predictions ``z`` (mean 0, std 1) against targets ``y``.

    The direction of the relation (sign of Pearson r) decides which asymptote is high, so a
    prediction that decreases with quality (e.g. a DMOS-like score) starts on the right side.
    """
    direction = 1.0 if _pearson(z, y) >= 0 else -1.0
    high, low = float(np.max(y)), float(np.min(y))
    if form == "logistic4":
        upper, lower = (high, low) if direction > 0 else (low, high)
        return [[upper, lower, 0.0, width] for width in _START_WIDTHS]
    return [[direction * (high - low), 1.0 / width, 0.0, 0.0, float(np.mean(y))] for width in _START_WIDTHS]


def _to_original_units(form: str, params: np.ndarray, mean: float, std: float) -> tuple[float, ...]:
    """Convert parameters fitted on z = (x - mean) / std back to parameters on x (same curve)."""
    if form == "logistic4":
        b1, b2, b3, b4 = params
        return (float(b1), float(b2), float(mean + std * b3), float(std * abs(b4)))
    b1, b2, b3, b4, b5 = params
    return (float(b1), float(b2 / std), float(mean + std * b3), float(b4 / std), float(b5 - b4 * mean / std))


def fit_logistic(pred, target, form: LogisticForm = "logistic4") -> LogisticFit:
    """Least-squares fit of ``target ~ f(pred)`` with ``f`` = :func:`logistic4` or :func:`logistic5`.

    ``pred`` and ``target`` have shape (N,), finite, N >= number of parameters. Predictions are
    standardised before fitting (the families are closed under affine changes of x, so the fitted
    curve is the same, only better conditioned), several starting widths are tried and the
    lowest squared error wins. If every start fails, a :class:`LogisticFitWarning` is issued and the
    identity mapping is returned (so the logistic PLCC falls back to the plain PLCC).
    """
    if form not in _LOGISTIC_FUNCTIONS:
        raise ValueError(f"unknown logistic form {form!r}; expected one of {sorted(_LOGISTIC_FUNCTIONS)}")
    x, y = _clean_or_raise(pred, target)
    # The same fit is asked for several times over (a trainer's last evaluation, the result table, the
    # scatter plot), and a fit that does not converge costs thousands of evaluations: remember the last
    # fits, keyed by the exact inputs. A remembered failure warns again, as a fresh one would.
    key = (form, x.shape[0], hashlib.blake2b(x.tobytes() + b"|" + y.tobytes(), digest_size=16).digest())
    if key in _FIT_CACHE:
        _FIT_CACHE.move_to_end(key)
        fit = _FIT_CACHE[key]
        if not fit.converged:
            warnings.warn(fit.message, LogisticFitWarning, stacklevel=2)
        return fit
    fit = _fit_logistic(x, y, form)
    _FIT_CACHE[key] = fit
    if len(_FIT_CACHE) > _FIT_CACHE_SIZE:
        _FIT_CACHE.popitem(last=False)
    return fit


_FIT_CACHE: "OrderedDict[tuple, LogisticFit]" = OrderedDict()
_FIT_CACHE_SIZE = 256


def _fit_logistic(x: np.ndarray, y: np.ndarray, form: str) -> LogisticFit:
    n_params = _LOGISTIC_N_PARAMS[form]
    if x.shape[0] < n_params:
        raise ValueError(f"{form} has {n_params} parameters; need at least {n_params} pairs, got {x.shape[0]}")
    reason = _constant_reason(x, y)
    if reason is not None:
        raise ValueError(f"cannot fit {form}: {reason}")

    mean, std = float(x.mean()), float(x.std())
    z = (x - mean) / std
    function = _LOGISTIC_FUNCTIONS[form]
    best_params, best_error, failures = None, math.inf, []
    for start in _initial_guesses(form, z, y):
        try:
            with warnings.catch_warnings():
                # "Covariance could not be estimated" concerns error bars we do not use.
                warnings.simplefilter("ignore", optimize.OptimizeWarning)
                params, _ = optimize.curve_fit(function, z, y, p0=start, maxfev=_MAX_FUNCTION_EVALUATIONS)
        except (RuntimeError, ValueError, FloatingPointError) as error:
            failures.append(str(error))
            continue
        fitted = function(z, *params)
        if not (np.all(np.isfinite(params)) and np.all(np.isfinite(fitted))):
            failures.append("non-finite parameters")
            continue
        error = float(np.sum((fitted - y) ** 2))
        if error < best_error:
            best_params, best_error = params, error

    if best_params is None:
        message = f"{form} fit failed from all {len(_START_WIDTHS)} starts ({failures[-1]}); using the identity mapping"
        warnings.warn(message, LogisticFitWarning, stacklevel=3)
        return LogisticFit(form=form, params=(), converged=False, message=message)
    return LogisticFit(form=form, params=_to_original_units(form, best_params, mean, std), converged=True)


def plcc_logistic(pred, target, form: LogisticForm = "logistic4") -> float:
    """Pearson r between ``f(pred)`` and ``target`` after fitting ``f`` (see :func:`fit_logistic`).

    The mapping absorbs the direction of the relation, so a perfectly *reversed* predictor also
    scores near 1 here; read it together with SRCC, whose sign is kept.
    """
    values, notes = _logistic_plcc_with_note(*_clean_or_raise(pred, target), form)
    for note in notes:
        warnings.warn(note, MetricWarning, stacklevel=2)
    return values


def _logistic_plcc_with_note(x: np.ndarray, y: np.ndarray, form: str) -> tuple[float, list[str]]:
    key = f"plcc_{form}"
    n_params = _LOGISTIC_N_PARAMS[form]
    if x.shape[0] < n_params:
        return math.nan, [f"{key} is nan: the {n_params}-parameter fit needs at least {n_params} pairs, got {x.shape[0]}"]
    reason = _constant_reason(x, y)
    if reason is not None:
        return math.nan, [f"{key} is nan: {reason}"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LogisticFitWarning)
        fit = fit_logistic(x, y, form)
    notes = [f"{key}: {w.message}" for w in caught if issubclass(w.category, LogisticFitWarning)]
    mapped = fit(x)
    if np.ptp(mapped) == 0:
        return math.nan, notes + [f"{key} is nan: the fitted {form} curve is flat over the predictions"]
    return _pearson(mapped, y), notes


# ----------------------------------------------------------------------------------------------
# all metrics at once
# ----------------------------------------------------------------------------------------------


def compute_metrics_with_notes(
    pred, target, *, nan_policy: NanPolicy = "omit"
) -> tuple[dict[str, float], list[str]]:
    """All metrics of :data:`METRIC_NAMES` plus human-readable notes on anything unusual.

    Args:
        pred: predicted scores, shape (N,).
        target: subjective scores, shape (N,).
        nan_policy: ``"omit"`` drops pairs where either value is non-finite (a note gives the count);
            ``"raise"`` raises ``ValueError`` naming the first such index.

    Returns:
        ``(metrics, notes)``; a metric that is undefined is ``nan`` and a note says why.

    Raises:
        ValueError: different lengths, not 1-D, or fewer than :data:`MIN_ITEMS` pairs given.
    """
    if nan_policy not in ("omit", "raise"):
        raise ValueError(f"nan_policy must be 'omit' or 'raise', got {nan_policy!r}")
    x, y = validate_pair(pred, target)
    notes: list[str] = []
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        if nan_policy == "raise":
            raise ValueError(
                f"{int((~finite).sum())} non-finite value(s), first at index {first} (pred={x[first]}, target={y[first]})"
            )
        notes.append(f"omitted {int((~finite).sum())} of {x.shape[0]} pairs with a non-finite value (first at index {first})")
        x, y = x[finite], y[finite]

    metrics = dict.fromkeys(METRIC_NAMES, math.nan)
    if x.shape[0] < MIN_ITEMS:
        notes.append(f"all metrics are nan: only {x.shape[0]} finite pairs remain, need at least {MIN_ITEMS}")
        return metrics, notes

    metrics["rmse"] = _rmse(x, y)
    reason = _constant_reason(x, y)
    if reason is not None:
        notes.append(f"{', '.join(CORRELATION_NAMES)} are nan: {reason}")
        return metrics, notes

    metrics["srcc"] = _spearman(x, y)
    metrics["plcc"] = _pearson(x, y)
    metrics["krcc"] = _kendall(x, y)
    for form in ("logistic4", "logistic5"):
        metrics[f"plcc_{form}"], form_notes = _logistic_plcc_with_note(x, y, form)
        notes.extend(form_notes)
    return metrics, notes


def compute_metrics(pred, target, *, nan_policy: NanPolicy = "omit") -> dict[str, float]:
    """SRCC, PLCC, logistic PLCC (4 and 5 parameters), KRCC and RMSE of ``pred`` (N,) vs ``target`` (N,).

    Same as :func:`compute_metrics_with_notes`, but each note becomes an :class:`MetricWarning`.
    """
    metrics, notes = compute_metrics_with_notes(pred, target, nan_policy=nan_policy)
    for note in notes:
        warnings.warn(note, MetricWarning, stacklevel=2)
    return metrics
