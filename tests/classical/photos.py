"""Real photographs for tests of the classical measures: scikit-image's sample images (shipped offline,
public domain or CC0), shrunk like ``perceptiq synthesize`` does (longer side <= 512, Lanczos)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

#: NIQE's pristine model in the tests is fitted on these ...
FIT_PHOTOS = ("motorcycle_left", "motorcycle_right", "brick", "grass", "gravel", "coins", "moon",
              "immunohistochemistry")
#: ... and checked on these, which it never saw (``cat`` is ``chelsea``: never fit on it).
HELD_OUT_PHOTOS = ("coffee", "rocket", "camera", "chelsea", "astronaut")


def sample_photo(name: str, max_side: int = 512) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a scikit-image sample image (grey expanded, alpha dropped)."""
    data = pytest.importorskip("skimage.data")
    if name.startswith("motorcycle_"):
        pixels = data.stereo_motorcycle()[0 if name == "motorcycle_left" else 1]
    else:
        pixels = getattr(data, name)()
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    picture = Image.fromarray(np.ascontiguousarray(pixels[:, :, :3]))
    if max(picture.size) > max_side:
        scale = max_side / max(picture.size)
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.LANCZOS)
    return np.asarray(picture)


def distort(pixels: np.ndarray, distortion: str, level: int, seed: int = 0) -> np.ndarray:
    """``pixels`` (H, W, 3) uint8 distorted by a ``perceptiq.data.synthetic`` type at ``level`` (uint8)."""
    from perceptiq.data.synthetic import get_distortion
    from perceptiq.data.synthetic.colour import from_uint8, to_uint8

    return to_uint8(get_distortion(distortion)(from_uint8(pixels), level, np.random.default_rng(seed)))
