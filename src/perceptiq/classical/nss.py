"""Natural-scene statistics: MSCN coefficients and moment-matching fits of (asymmetric) generalised
Gaussians -- the building blocks of NIQE (Mittal, Soundararajan & Bovik, IEEE SPL 20(3), 2013) and
BRISQUE (Mittal, Moorthy & Bovik, IEEE TIP 21(12), 2012).

All estimators work on the last axis of their input, so one call fits every patch of an image:
``x`` of shape (..., N) gives parameters of shape (...).

MSCN (NIQE Eq. 1-3), for a grey image I on the 0-255 scale::

    Î(i, j) = (I(i, j) - μ(i, j)) / (σ(i, j) + C),   C = 1
    μ(i, j) = Σ_k Σ_l w(k, l) I(i + k, j + l)
    σ(i, j) = sqrt( |Σ_k Σ_l w(k, l) I(i + k, j + l)² - μ(i, j)²| )

with w a 7x7 circularly-symmetric Gaussian (σ_w = 7/6, i.e. sampled out to 3 standard deviations,
K = L = 3) rescaled to unit volume. Borders replicate the edge pixel (MATLAB ``imfilter(...,
'replicate')``, scipy ``mode="nearest"``).

Zero-mean GGD (NIQE Eq. 4), shape α, variance σ²::

    f(x; α, σ²) = α / (2 β Γ(1/α)) exp(-(|x| / β)^α),   β = σ sqrt(Γ(1/α) / Γ(3/α))

Moment matching (Sharifi & Leon-Garcia 1995): E[x²] / E[|x|]² = Γ(1/α) Γ(3/α) / Γ(2/α)² =: r(α);
r is strictly decreasing in α, so α is found by inverting r.

AGGD (NIQE Eq. 6-7), shape ν, left/right scales β_l, β_r::

    f(x) = ν / ((β_l + β_r) Γ(1/ν)) exp(-(-x / β_l)^ν)   for x < 0
           ν / ((β_l + β_r) Γ(1/ν)) exp(-( x / β_r)^ν)   for x >= 0
    β_l = σ_l sqrt(Γ(1/ν) / Γ(3/ν)),   β_r likewise,   η = (β_r - β_l) Γ(2/ν) / Γ(1/ν)  (the mean)

Moment matching (Lasmar, Stitou & Berthoumieu, ICIP 2009): σ_l² = mean of x² over the x < 0,
σ_r² = mean of x² over the x > 0, γ̂ = σ_l / σ_r, r̂ = E[|x|]² / E[x²],
R̂ = r̂ (γ̂³ + 1)(γ̂ + 1) / (γ̂² + 1)², and ν solves Γ(2/ν)² / (Γ(1/ν) Γ(3/ν)) = R̂, i.e. r(ν) = 1 / R̂.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, special

#: The stabilising constant C of the MSCN denominator, for grey levels on the 0-255 scale.
MSCN_C = 1.0
#: Side of the Gaussian window of the local mean/deviation, and its standard deviation.
MSCN_WINDOW_SIZE = 7
MSCN_WINDOW_SIGMA = 7.0 / 6.0

#: The shapes the estimators can return: the grid of the reference implementations, 0.2 .. 10.
#: Outside it the moment ratio is clamped (shape 0.2 or 10); such extremes only occur on degenerate
#: samples (all values nearly equal in magnitude, or a handful of large values among zeros).
SHAPE_MIN, SHAPE_MAX, SHAPE_STEP = 0.2, 10.0, 0.001


def gaussian_window(size: int = MSCN_WINDOW_SIZE, sigma: float = MSCN_WINDOW_SIGMA) -> np.ndarray:
    """A (size, size) circularly-symmetric Gaussian, float64, summing to 1 (MATLAB ``fspecial``)."""
    half = (size - 1) / 2.0
    offsets = np.arange(size, dtype=np.float64) - half
    profile = np.exp(-(offsets**2) / (2.0 * sigma**2))
    window = np.outer(profile, profile)
    return window / window.sum()


def local_mean_and_deviation(grey: np.ndarray, window: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """μ and σ of NIQE Eq. 2-3 for a (H, W) grey image: two (H, W) float64 arrays."""
    window = gaussian_window() if window is None else window
    image = np.asarray(grey, dtype=np.float64)
    mean = ndimage.correlate(image, window, mode="nearest")
    mean_of_square = ndimage.correlate(image * image, window, mode="nearest")
    # |.| because rounding can make E[I²] - μ² slightly negative on flat regions
    deviation = np.sqrt(np.abs(mean_of_square - mean * mean))
    return mean, deviation


def mscn(grey: np.ndarray, c: float = MSCN_C, window: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MSCN coefficients (NIQE Eq. 1) of a (H, W) grey image on the 0-255 scale, and the local σ.

    Returns ``(coefficients, sigma)``, both (H, W) float64; ``sigma`` is what NIQE's patch sharpness
    averages.
    """
    image = np.asarray(grey, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"mscn expects a 2-D grey image, got shape {image.shape}")
    mean, deviation = local_mean_and_deviation(image, window)
    return (image - mean) / (deviation + c), deviation


# -- the moment ratio r(α) = Γ(1/α) Γ(3/α) / Γ(2/α)² and its inverse -------------------------------------
_SHAPE_GRID = np.round(np.arange(SHAPE_MIN, SHAPE_MAX + SHAPE_STEP / 2, SHAPE_STEP), 6)


def moment_ratio(shape: np.ndarray | float) -> np.ndarray:
    """r(α) = E[x²] / E[|x|]² of a zero-mean GGD with shape α: Γ(1/α) Γ(3/α) / Γ(2/α)² (float64)."""
    inverse = 1.0 / np.asarray(shape, dtype=np.float64)
    return np.exp(special.gammaln(inverse) + special.gammaln(3.0 * inverse) - 2.0 * special.gammaln(2.0 * inverse))


# r is strictly decreasing, so (r reversed, α reversed) is an increasing table that np.interp inverts.
_RATIO_TABLE = moment_ratio(_SHAPE_GRID)[::-1].copy()
_SHAPE_TABLE = _SHAPE_GRID[::-1].copy()


def shape_from_ratio(ratio: np.ndarray | float) -> np.ndarray:
    """The α with r(α) = ``ratio``, by linear interpolation on the grid α = 0.2, 0.201, ..., 10.

    Ratios beyond the grid's ends give 0.2 or 10; non-finite ratios give nan. The reference
    implementations take the nearest grid point instead; interpolating removes that ±0.0005
    quantisation and otherwise changes nothing.
    """
    ratio = np.asarray(ratio, dtype=np.float64)
    shape = np.interp(ratio, _RATIO_TABLE, _SHAPE_TABLE)
    return np.where(np.isfinite(ratio), shape, np.nan)


def _gamma_ratio(shape: np.ndarray, numerator: float, denominator: float) -> np.ndarray:
    """Γ(numerator/α) / Γ(denominator/α), computed through log-gamma."""
    return np.exp(special.gammaln(numerator / shape) - special.gammaln(denominator / shape))


def fit_ggd(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Moment-matching fit of a zero-mean GGD along the last axis: ``(shape α, variance σ²)``.

    ``samples`` (..., N) -> two arrays of shape (...). σ² = mean(x²) (the mean is taken to be 0, as
    MSCN coefficients are); α = r⁻¹(mean(x²) / mean(|x|)²). An all-zero sample gives nan shape.
    """
    x = np.asarray(samples, dtype=np.float64)
    second_moment = np.mean(x * x, axis=-1)
    mean_abs = np.mean(np.abs(x), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = second_moment / (mean_abs * mean_abs)
    return shape_from_ratio(ratio), second_moment


def fit_aggd(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching fit of an AGGD along the last axis: ``(shape ν, mean η, σ_l², σ_r²)``.

    ``samples`` (..., N) -> four arrays of shape (...). Zeros belong to neither side. A sample with
    no negative (or no positive) value has an undefined σ_l (σ_r) and gives nan for every parameter.
    """
    x = np.asarray(samples, dtype=np.float64)
    square = x * x
    negative, positive = x < 0, x > 0
    n_negative, n_positive = negative.sum(axis=-1), positive.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        left_variance = np.where(negative, square, 0.0).sum(axis=-1) / n_negative
        right_variance = np.where(positive, square, 0.0).sum(axis=-1) / n_positive
        gamma_hat = np.sqrt(left_variance) / np.sqrt(right_variance)
        mean_abs = np.mean(np.abs(x), axis=-1)
        r_hat = mean_abs * mean_abs / np.mean(square, axis=-1)
        r_hat_normalised = r_hat * (gamma_hat**3 + 1.0) * (gamma_hat + 1.0) / (gamma_hat**2 + 1.0) ** 2
        shape = shape_from_ratio(1.0 / r_hat_normalised)
        defined = np.isfinite(shape) & (n_negative > 0) & (n_positive > 0)
        shape = np.where(defined, shape, np.nan)
        safe_shape = np.where(defined, shape, 1.0)
        scale_factor = np.sqrt(_gamma_ratio(safe_shape, 1.0, 3.0))  # β / σ
        mean = (np.sqrt(right_variance) - np.sqrt(left_variance)) * scale_factor * _gamma_ratio(safe_shape, 2.0, 1.0)
    nan_unless_defined = lambda value: np.where(defined, value, np.nan)
    return shape, nan_unless_defined(mean), nan_unless_defined(left_variance), nan_unless_defined(right_variance)
