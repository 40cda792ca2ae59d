"""Blurs (KADID-10k group "blur"): Gaussian, lens (disk) and linear motion blur.

Every function maps an sRGB image (H, W, 3) float32 in [0, 1] and one strength to a
new image of the same shape; borders are handled by mirror reflection so that the
frame does not darken. Per-level strengths live in ``catalogue.py``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def convolve_channels(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each colour channel of (H, W, 3) with a 2-D (k, k) kernel (mirror borders)."""
    return np.stack(
        [ndimage.convolve(img[..., c], kernel, mode="reflect") for c in range(img.shape[-1])],
        axis=-1,
    )


def disk_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """Normalised (k, k) disk of ``radius`` px, k = 2*ceil(radius)+1.

    Each tap is the fraction of its pixel covered by the disk (estimated on a
    ``supersample`` x ``supersample`` grid), so non-integer radii give distinct,
    smoothly growing kernels instead of jumping between integer disks.
    """
    half = int(np.ceil(radius))
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    centres = np.arange(-half, half + 1)
    sub = (centres[:, None] + offsets[None, :]).ravel()  # sub-pixel sample positions
    inside = (sub[:, None] ** 2 + sub[None, :] ** 2) <= radius**2
    k = 2 * half + 1
    coverage = inside.reshape(k, supersample, k, supersample).mean(axis=(1, 3))
    return coverage / coverage.sum()


def line_kernel(length: float, angle: float, samples_per_px: int = 4) -> np.ndarray:
    """Normalised (k, k) kernel of a straight segment ``length`` px long at ``angle`` radians.

    Points along the segment are splatted bilinearly onto the grid, which keeps the
    kernel centred and lets the length vary continuously.
    """
    half = int(np.ceil(length / 2.0)) + 1
    k = 2 * half + 1
    kernel = np.zeros((k, k), dtype=np.float64)
    t = np.linspace(-(length - 1) / 2.0, (length - 1) / 2.0, max(2, int(samples_per_px * length)))
    ys = half + t * np.sin(angle)
    xs = half + t * np.cos(angle)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    wy, wx = ys - y0, xs - x0
    for dy, wy_part in ((0, 1 - wy), (1, wy)):
        for dx, wx_part in ((0, 1 - wx), (1, wx)):
            np.add.at(kernel, (y0 + dy, x0 + dx), wy_part * wx_part)
    return kernel / kernel.sum()


def gaussian_blur(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Isotropic Gaussian low-pass with standard deviation ``sigma`` px on each channel."""
    return ndimage.gaussian_filter(img, sigma=(sigma, sigma, 0.0), mode="reflect")


def lens_blur(img: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Out-of-focus blur: convolution with a uniform disk (the defocus point-spread function)."""
    return convolve_channels(img, disk_kernel(radius))


def motion_blur(img: np.ndarray, length: float, rng: np.random.Generator) -> np.ndarray:
    """Linear camera-shake blur: a segment of ``length`` px in a direction drawn from ``rng``."""
    angle = rng.uniform(0.0, np.pi)  # drawn first and independent of the level
    return convolve_channels(img, line_kernel(length, angle))
