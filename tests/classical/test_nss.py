"""MSCN and the GGD/AGGD moment-matching estimators: hand-computed cases and samples of known laws.

Tolerances on estimates from random samples are derived from the estimator's sampling error (delta
method, or the spread over independent sub-samples), never fitted to one machine's output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from perceptiq.classical.nss import (
    MSCN_WINDOW_SIGMA,
    fit_aggd,
    fit_ggd,
    gaussian_window,
    moment_ratio,
    mscn,
    shape_from_ratio,
)

EPS = np.finfo(np.float64).eps
N_SIGMA = 5.0  # a 5-sigma band: a correct estimator fails it with probability ~6e-7 per check


def ggd_abs_moment(shape: float, k: int) -> float:
    """E|x|^k of a zero-mean GGD with unit scale parameter (scipy.stats.gennorm): Γ((k+1)/α) / Γ(1/α)."""
    return math.exp(special.gammaln((k + 1) / shape) - special.gammaln(1 / shape))


# -- the window and MSCN ------------------------------------------------------------------------------
def test_gaussian_window_is_the_papers_7x7_unit_volume_gaussian():
    window = gaussian_window()
    assert window.shape == (7, 7)
    assert window.sum() == pytest.approx(1.0, abs=64 * EPS)
    np.testing.assert_allclose(window, window.T, rtol=0, atol=0)
    # corner / centre = exp(-(3² + 3²) / (2 σ²)) with σ = 7/6
    assert window[0, 0] / window[3, 3] == pytest.approx(math.exp(-18 / (2 * MSCN_WINDOW_SIGMA**2)), rel=1e-12)
    assert window[3, 0] / window[3, 3] == pytest.approx(math.exp(-9 / (2 * MSCN_WINDOW_SIGMA**2)), rel=1e-12)


def test_mscn_of_a_constant_image_is_zero_and_sigma_vanishes():
    level = 173.0
    coefficients, sigma = mscn(np.full((20, 30), level))
    # μ = level · Σw with Σw = 1 up to 49 roundings: |I - μ| <= ~64 eps · level, divided by σ + C >= 1
    assert np.max(np.abs(coefficients)) <= 64 * EPS * level
    # σ = sqrt(|E[I²] - μ²|), both terms ≈ level² with relative rounding ~64 eps
    assert np.max(sigma) <= math.sqrt(2 * 64 * EPS) * level


def test_mscn_equals_an_explicit_computation_with_replicated_borders():
    rng = np.random.default_rng(3)
    grey = rng.uniform(0, 255, (12, 15))
    coefficients, sigma = mscn(grey)
    window = gaussian_window()
    padded = np.pad(grey, 3, mode="edge")
    for i, j in [(0, 0), (5, 7), (11, 14), (2, 13)]:  # corners, interior, near-border
        neighbourhood = padded[i : i + 7, j : j + 7]
        mu = float(np.sum(window * neighbourhood))
        sd = math.sqrt(abs(float(np.sum(window * neighbourhood**2)) - mu**2))
        assert sigma[i, j] == pytest.approx(sd, rel=1e-10)
        assert coefficients[i, j] == pytest.approx((grey[i, j] - mu) / (sd + 1.0), rel=1e-10, abs=1e-12)


def test_mscn_rejects_colour_arrays():
    with pytest.raises(ValueError, match="2-D grey image"):
        mscn(np.zeros((8, 8, 3)))


# -- the moment ratio ---------------------------------------------------------------------------------
def test_moment_ratio_known_values_and_inverse():
    # Gaussian (α = 2): E[x²]/E|x|² = π/2; Laplace (α = 1): 2
    assert moment_ratio(2.0) == pytest.approx(math.pi / 2, rel=1e-12)
    assert moment_ratio(1.0) == pytest.approx(2.0, rel=1e-12)
    shapes = np.array([0.3, 0.77, 1.0, 2.0, 3.3, 9.5])
    # linear interpolation on a 0.001 grid: error <= step² · max|α''(r)| / 8, far below 1e-4 here
    np.testing.assert_allclose(shape_from_ratio(moment_ratio(shapes)), shapes, atol=1e-4)
    assert shape_from_ratio(1e9) == pytest.approx(0.2)  # beyond the grid: clamped
    assert shape_from_ratio(1.0) == pytest.approx(10.0)
    assert np.isnan(shape_from_ratio(np.nan))


# -- GGD ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [0.6, 1.0, 2.0, 3.0])
def test_ggd_fit_recovers_the_shape_of_gennorm_samples(shape):
    n = 200_000
    scale = 1.7
    samples = stats.gennorm(beta=shape, scale=scale).rvs(size=n, random_state=np.random.default_rng(int(shape * 10)))
    estimated_shape, estimated_variance = fit_ggd(samples)

    # Delta method. The estimator is α̂ = r⁻¹(ρ̂), ρ̂ = m̂2 / m̂1² with m̂k the sample means of |x|^k.
    # The scale cancels in ρ, so use unit-scale moments μk = E|x|^k.
    mu1, mu2, mu3, mu4 = (ggd_abs_moment(shape, k) for k in (1, 2, 3, 4))
    covariance = np.array([[mu2 - mu1**2, mu3 - mu1 * mu2], [mu3 - mu1 * mu2, mu4 - mu2**2]]) / n
    gradient = np.array([-2 * mu2 / mu1**3, 1 / mu1**2])
    sd_ratio = math.sqrt(gradient @ covariance @ gradient)
    h = 1e-5
    slope = (moment_ratio(shape + h) - moment_ratio(shape - h)) / (2 * h)  # dr/dα < 0
    sd_shape = sd_ratio / abs(float(slope))
    assert abs(estimated_shape - shape) <= N_SIGMA * sd_shape + 1e-4, (estimated_shape, shape, sd_shape)

    true_variance = scale**2 * mu2
    sd_variance = scale**2 * math.sqrt((mu4 - mu2**2) / n)
    assert abs(estimated_variance - true_variance) <= N_SIGMA * sd_variance


def test_ggd_fit_works_along_the_last_axis_and_flags_all_zero_samples():
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(3, 4, 500))
    batch[1, 2] = 0.0
    shapes, variances = fit_ggd(batch)
    assert shapes.shape == variances.shape == (3, 4)
    single_shape, single_variance = fit_ggd(batch[2, 1])
    assert shapes[2, 1] == single_shape and variances[2, 1] == single_variance
    assert np.isnan(shapes[1, 2]) and variances[1, 2] == 0.0


# -- AGGD ---------------------------------------------------------------------------------------------
def test_aggd_fit_on_a_hand_computed_sample():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 1.0, 3.0])
    shape, mean, left, right = fit_aggd(x)
    # the zero belongs to neither side: σ_l² = (4 + 1) / 2, σ_r² = (1 + 1 + 9) / 3
    assert left == pytest.approx(2.5, rel=1e-14)
    assert right == pytest.approx(11 / 3, rel=1e-14)
    gamma_hat = math.sqrt(2.5 / (11 / 3))
    r_hat = (8 / 6) ** 2 / (16 / 6)                       # E|x|² / E[x²] = 2/3
    assert r_hat == pytest.approx(2 / 3)
    big_r = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    # the shape solves Γ(2/ν)² / (Γ(1/ν) Γ(3/ν)) = R̂, i.e. r(ν) = 1/R̂ (interpolation error ~1e-7)
    assert float(moment_ratio(shape)) == pytest.approx(1 / big_r, rel=1e-5)
    scale_factor = math.sqrt(math.gamma(1 / shape) / math.gamma(3 / shape))
    expected_mean = (math.sqrt(11 / 3) - math.sqrt(2.5)) * scale_factor * math.gamma(2 / shape) / math.gamma(1 / shape)
    assert mean == pytest.approx(expected_mean, rel=1e-12)
    assert mean > 0  # heavier right side


def test_aggd_fit_of_a_symmetric_sample_has_zero_mean():
    x = np.array([-3.0, -1.0, -0.5, 0.5, 1.0, 3.0])
    shape, mean, left, right = fit_aggd(x)
    assert left == right
    assert mean == 0.0
    assert float(moment_ratio(shape)) == pytest.approx(np.mean(x**2) / np.mean(np.abs(x)) ** 2, rel=1e-5)


def test_aggd_fit_recovers_a_constructed_asymmetric_law():
    """x = -β_l |g| with probability β_l/(β_l+β_r), else β_r |g|, g ~ gennorm(ν), has exactly the AGGD
    density of NIQE Eq. 6 (the left half-density is (β_l/(β_l+β_r)) · (2/β_l) · gennorm at -x/β_l)."""
    nu, beta_left, beta_right = 0.8, 0.6, 1.5
    n_sub, k = 40_000, 25
    rng = np.random.default_rng(11)
    magnitude = np.abs(stats.gennorm(beta=nu).rvs(size=n_sub * k, random_state=rng))
    negative = rng.uniform(size=n_sub * k) < beta_left / (beta_left + beta_right)
    x = np.where(negative, -beta_left * magnitude, beta_right * magnitude)

    gamma_1, gamma_2, gamma_3 = (math.gamma(m / nu) for m in (1, 2, 3))
    truth = np.array([nu, (beta_right - beta_left) * gamma_2 / gamma_1,
                      beta_left**2 * gamma_3 / gamma_1, beta_right**2 * gamma_3 / gamma_1])
    estimate = np.array([float(v) for v in fit_aggd(x)])
    # standard error of the full-sample estimate from k independent sub-samples: sd_sub / sqrt(k)
    sub_estimates = np.stack(fit_aggd(x.reshape(k, n_sub)), axis=1)         # (k, 4)
    standard_error = sub_estimates.std(axis=0, ddof=1) / math.sqrt(k)
    assert np.all(np.abs(estimate - truth) <= N_SIGMA * standard_error + 1e-4), (estimate, truth, standard_error)


def test_aggd_fit_is_nan_without_one_side():
    shape, mean, left, right = fit_aggd(np.array([[0.5, 1.0, 2.0, 0.0], [-1.0, 1.0, -2.0, 2.0]]))
    assert np.isnan([shape[0], mean[0], left[0], right[0]]).all()
    assert np.isfinite([shape[1], mean[1], left[1], right[1]]).all()

