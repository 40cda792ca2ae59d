"""Noise (KADID-10k group "noise"): white Gaussian, white noise in the colour components,
impulse, multiplicative, and denoising artefacts.

Every function draws its random field from ``rng`` at unit strength first and only then
scales it by the level's strength, so the levels of one image share one noise pattern
and differ only in its amplitude (this is what makes severity exactly monotone).
Inputs and outputs are sRGB (H, W, 3) float32 in [0, 1].
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..colour import rgb_to_ycbcr, ycbcr_to_rgb


def white_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive i.i.d. Gaussian noise, standard deviation ``sigma``, independent per RGB channel."""
    unit = rng.standard_normal(img.shape)
    return np.clip(img + sigma * unit, 0.0, 1.0).astype(np.float32)


def white_noise_colour_component(
    img: np.ndarray, sigma: float, rng: np.random.Generator, *, luma_fraction: float
) -> np.ndarray:
    """Additive Gaussian noise in YCbCr: ``sigma`` on Cb and Cr, ``luma_fraction * sigma`` on Y."""
    unit = rng.standard_normal(img.shape)
    per_channel = sigma * np.array([luma_fraction, 1.0, 1.0])
    return ycbcr_to_rgb(rgb_to_ycbcr(img) + unit * per_channel)


def impulse_noise(img: np.ndarray, density: float, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise: a fraction ``density`` of pixels set to black or white (all channels).

    A pixel is hit when its uniform draw is below ``density``, so the set of hit pixels
    of a lower level is contained in that of a higher level.
    """
    hit_draw = rng.random(img.shape[:2])
    salt = rng.random(img.shape[:2]) < 0.5
    out = img.copy()
    hit = hit_draw < density
    out[hit] = np.where(salt[hit], 1.0, 0.0)[:, None]
    return out


def multiplicative_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Speckle noise: each value times (1 + ``sigma`` * N(0, 1)), independent per channel."""
    unit = rng.standard_normal(img.shape)
    return np.clip(img * (1.0 + sigma * unit), 0.0, 1.0).astype(np.float32)


def wiener_denoise(noisy: np.ndarray, noise_variance: float, window: int) -> np.ndarray:
    """Local linear MMSE (Wiener) denoiser on each channel of (H, W, 3).

    out = mu + max(var - nu, 0) / max(var, nu) * (x - mu), with mu, var the local mean and
    variance over a ``window`` x ``window`` box and nu the noise variance: flat areas are
    smoothed to their mean, textured areas are mostly kept — which leaves the blotchy,
    texture-dependent artefacts typical of denoised images.
    """
    size = (window, window, 1)
    mean = ndimage.uniform_filter(noisy, size=size, mode="reflect")
    variance = np.maximum(ndimage.uniform_filter(noisy * noisy, size=size, mode="reflect") - mean**2, 0.0)
    gain = np.maximum(variance - noise_variance, 0.0) / np.maximum(variance, noise_variance)
    return mean + gain * (noisy - mean)


def denoise_artefacts(img: np.ndarray, sigma: float, rng: np.random.Generator, *, window: int) -> np.ndarray:
    """Denoising artefacts (KADID "denoise"): add Gaussian noise of ``sigma``, then Wiener-denoise it."""
    noisy = img.astype(np.float64) + sigma * rng.standard_normal(img.shape)
    return np.clip(wiener_denoise(noisy, sigma**2, window), 0.0, 1.0).astype(np.float32)
