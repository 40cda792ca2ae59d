"""Sharpness and contrast (KADID-10k group "sharpness & contrast"): high sharpen, contrast change.

Inputs and outputs are sRGB (H, W, 3) float32 in [0, 1].
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..colour import luma


def high_sharpen(img: np.ndarray, amount: float, rng: np.random.Generator, *, radius: float) -> np.ndarray:
    """Over-sharpening by unsharp masking: x + ``amount`` * (x - Gaussian_``radius``(x)), clipped.

    Strong amounts give the halos and clipped edges of an over-processed photo.
    """
    low_pass = ndimage.gaussian_filter(img, sigma=(radius, radius, 0.0), mode="reflect")
    return np.clip(img + amount * (img - low_pass), 0.0, 1.0).astype(np.float32)


def contrast_change(img: np.ndarray, contrast: float, rng: np.random.Generator) -> np.ndarray:
    """Contrast reduction: pull every value towards the mean luma, m + ``contrast`` * (x - m), 0 < contrast < 1."""
    mean_luma = float(luma(img).mean())
    return (mean_luma + contrast * (img - mean_luma)).astype(np.float32)
