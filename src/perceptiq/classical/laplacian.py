"""Variance of the Laplacian: a training-free sharpness (focus) measure, higher = sharper.

    L(i, j) = I(i-1, j) + I(i+1, j) + I(i, j-1) + I(i, j+1) - 4 I(i, j)      (3x3 kernel [[0,1,0],[1,-4,1],[0,1,0]])
    score   = mean over (i, j) of (L - mean L)²                            (population variance)

I is the BT.601 luma on the 0-255 scale (not rounded). L is evaluated only where the whole 3x3
neighbourhood lies inside the image ((H-2) x (W-2) values), so no border rule invents edges.
The score depends on resolution (a downscaled copy of the same photo scores higher), so compare it
between images of the same size.
"""

from __future__ import annotations

import numpy as np

from .base import ClassicalMeasure
from .images import ImageSource, describe_source, load_luminance

LAPLACIAN_KERNEL = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def laplacian(grey: np.ndarray) -> np.ndarray:
    """The 3x3 Laplacian of a (H, W) grey image at interior pixels: (H - 2, W - 2) float64."""
    x = np.asarray(grey, dtype=np.float64)
    if x.ndim != 2 or min(x.shape) < 3:
        raise ValueError(f"the Laplacian needs a 2-D image of at least 3x3 pixels, got shape {x.shape}")
    centre = x[1:-1, 1:-1]
    return x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] - 4.0 * centre


def laplacian_variance(grey: np.ndarray) -> float:
    """Population variance of :func:`laplacian` of a (H, W) grey image."""
    return float(np.var(laplacian(grey)))


class LaplacianVariance(ClassicalMeasure):
    """``LaplacianVariance().score(image)``: variance of the Laplacian of the image's luma (higher = sharper)."""

    name = "laplacian_variance"

    def score(self, image: ImageSource) -> float:
        grey = load_luminance(image)
        if min(grey.shape) < 3:
            raise ValueError(f"{describe_source(image)}: image is {grey.shape[1]}x{grey.shape[0]} px; "
                             "the variance of the Laplacian needs at least 3x3")
        return laplacian_variance(grey)

    def __repr__(self) -> str:
        return "LaplacianVariance()"
