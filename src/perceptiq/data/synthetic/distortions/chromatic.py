"""Colour distortions (KADID-10k group "color distortions").

Colour diffusion, colour shift, colour quantisation, desaturation and
over-saturation. Inputs and outputs are sRGB (H, W, 3) float32 in [0, 1]; chroma
operations work in CIE L*a*b* so that lightness is left alone.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from ..colour import from_uint8, lab_to_rgb, rgb_to_lab, to_uint8


def colour_diffusion(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Bleed colours across edges: Gaussian-blur the a*, b* planes by ``sigma`` px, keep L*."""
    lab = rgb_to_lab(img)
    lab[..., 1:] = ndimage.gaussian_filter(lab[..., 1:], sigma=(sigma, sigma, 0.0), mode="reflect")
    return lab_to_rgb(lab)


def colour_shift(img: np.ndarray, distance: float, rng: np.random.Generator) -> np.ndarray:
    """Mis-registered colour planes: translate one RGB channel by ``distance`` px.

    The channel and the direction are drawn from ``rng`` before anything depends on
    the level, so all levels of one image move the same plane the same way.
    """
    channel = int(rng.integers(0, 3))
    angle = rng.uniform(0.0, 2.0 * np.pi)
    out = img.copy()
    offset = (distance * np.sin(angle), distance * np.cos(angle))
    out[..., channel] = ndimage.shift(img[..., channel], offset, order=1, mode="nearest")
    return out


def colour_quantisation(img: np.ndarray, colours: float, rng: np.random.Generator) -> np.ndarray:
    """Palette reduction to ``colours`` colours (median cut, no dithering) via Pillow."""
    picture = Image.fromarray(to_uint8(img), mode="RGB")
    indexed = picture.quantize(colors=int(colours), method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return from_uint8(np.asarray(indexed.convert("RGB")))


def scale_chroma(img: np.ndarray, factor: float) -> np.ndarray:
    """Multiply the a*, b* planes (chroma) by ``factor``; out-of-gamut colours clip in sRGB."""
    lab = rgb_to_lab(img)
    lab[..., 1:] *= factor
    return lab_to_rgb(lab)


def desaturate(img: np.ndarray, remaining_chroma: float, rng: np.random.Generator) -> np.ndarray:
    """Colour saturation down (KADID "color saturation 1"): keep ``remaining_chroma`` of the chroma."""
    return scale_chroma(img, remaining_chroma)


def oversaturate(img: np.ndarray, chroma_gain: float, rng: np.random.Generator) -> np.ndarray:
    """Colour saturation up (KADID "color saturation 2"): multiply chroma by ``chroma_gain`` > 1."""
    return scale_chroma(img, chroma_gain)
