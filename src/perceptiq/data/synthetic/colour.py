"""Colour-space conversions and 8-bit round trips used by the distortions and the label.

All images are float32 arrays of shape (H, W, 3) holding sRGB values in [0, 1].
The constants below are the published definitions of the colour spaces (IEC 61966-2-1
sRGB with a D65 white, CIE 1976 L*a*b*, ITU-R BT.601 full-range YCbCr), not tunables.
"""

from __future__ import annotations

import numpy as np

# sRGB (linear) -> CIE XYZ, D65 white (IEC 61966-2-1).
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    dtype=np.float64,
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_D65_WHITE = _RGB_TO_XYZ.sum(axis=1)  # XYZ of linear RGB (1, 1, 1)

# CIE 1976 L*a*b* breakpoint: (6/29)^3 and the slope of the linear segment.
_LAB_EPSILON = (6.0 / 29.0) ** 3
_LAB_SLOPE = (29.0 / 6.0) ** 2 / 3.0

# ITU-R BT.601 full-range (JPEG/JFIF) YCbCr, values in [0, 1] with chroma centred on 0.5.
_RGB_TO_YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ],
    dtype=np.float64,
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)
_CHROMA_OFFSET = np.array([0.0, 0.5, 0.5])


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """Undo the sRGB transfer curve: (..., 3) in [0, 1] -> linear light in [0, 1]."""
    rgb = np.clip(rgb, 0.0, 1.0).astype(np.float64)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Apply the sRGB transfer curve: linear light -> (..., 3) sRGB in [0, 1]."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1.0 / 2.4) - 0.055)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (H, W, 3) in [0, 1] -> CIE L*a*b* (H, W, 3), L in [0, 100], float64."""
    xyz = srgb_to_linear(rgb) @ _RGB_TO_XYZ.T / _D65_WHITE
    f = np.where(xyz > _LAB_EPSILON, np.cbrt(xyz), _LAB_SLOPE * xyz + 4.0 / 29.0)
    lightness = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (H, W, 3) -> sRGB (H, W, 3) float32, clipped to [0, 1] (out-of-gamut colours clip)."""
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > 6.0 / 29.0, f**3, (f - 4.0 / 29.0) / _LAB_SLOPE) * _D65_WHITE
    return linear_to_srgb(xyz @ _XYZ_TO_RGB.T).astype(np.float32)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """sRGB (H, W, 3) in [0, 1] -> BT.601 full-range YCbCr (H, W, 3), chroma centred on 0.5."""
    return rgb.astype(np.float64) @ _RGB_TO_YCBCR.T + _CHROMA_OFFSET


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """BT.601 full-range YCbCr (H, W, 3) -> sRGB (H, W, 3) float32, clipped to [0, 1]."""
    rgb = (ycbcr - _CHROMA_OFFSET) @ _YCBCR_TO_RGB.T
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma Y' (H, W) of an sRGB image (H, W, 3)."""
    return rgb.astype(np.float64) @ _RGB_TO_YCBCR[0]


def to_uint8(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> uint8 with rounding (what an 8-bit file stores)."""
    return np.clip(np.rint(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def from_uint8(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> float32 in [0, 1]."""
    return np.asarray(img, dtype=np.float32) / np.float32(255.0)
