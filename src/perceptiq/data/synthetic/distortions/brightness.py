"""Brightness change (KADID-10k group "brightness change"): brighten, darken, mean shift.

Inputs and outputs are sRGB (H, W, 3) float32 in [0, 1].
"""

from __future__ import annotations

import numpy as np


def brighten(img: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
    """Lift mid-tones with the power curve x ** (1 / ``gamma``), ``gamma`` > 1; black and white stay put."""
    return np.power(np.clip(img, 0.0, 1.0), 1.0 / gamma).astype(np.float32)


def darken(img: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
    """Crush mid-tones with the power curve x ** ``gamma``, ``gamma`` > 1; black and white stay put."""
    return np.power(np.clip(img, 0.0, 1.0), gamma).astype(np.float32)


def mean_shift(img: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
    """Add ``shift`` to every value, up or down (direction drawn from ``rng``), then clip.

    Unlike the power curves this moves black and white too, so highlights (or
    shadows) saturate.
    """
    direction = 1.0 if rng.random() < 0.5 else -1.0
    return np.clip(img + direction * shift, 0.0, 1.0).astype(np.float32)
