"""The 25 distortion types as data: name, KADID-10k id and group, and the strength per level.

The order, ids and groups follow KADID-10k (Lin, Hosu & Saupe, 2019); the
implementations and the strength tables are this toolkit's own (see docs/synthetic.md).
Every entry is callable as ``distortion(img, level, rng)``: a pure function of an sRGB
(H, W, 3) float32 image in [0, 1], a level 1..5 (higher = more severe) and a numpy
Generator, returning a new (H, W, 3) float32 image in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from PIL import features

from .distortions import blur, brightness, chromatic, compression, noise, sharpness, spatial

DistortionFunction = Callable[..., np.ndarray]


@dataclass(frozen=True)
class DistortionType:
    """One distortion type: what it is, and how strong each of its levels is.

    ``strengths[level - 1]`` is the value of ``parameter`` at that level; ``options``
    are fixed keyword arguments of ``apply``. ``codec`` names a Pillow feature the type
    needs (``PIL.features.check``), None when it needs none.
    """

    name: str
    kadid_id: int
    kadid_name: str
    group: str
    description: str
    parameter: str
    strengths: tuple[float, ...]
    apply: DistortionFunction = field(repr=False, compare=False)
    options: Mapping[str, float] = field(default_factory=dict)
    codec: str | None = None

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(range(1, len(self.strengths) + 1))

    def available(self) -> bool:
        """False where the Pillow build here lacks the codec this type needs."""
        return self.codec is None or bool(features.check(self.codec))

    def strength(self, level: int) -> float:
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level not in self.levels:
            raise ValueError(
                f"distortion '{self.name}': level must be an integer in 1..{len(self.strengths)}, got {level!r}"
            )
        return self.strengths[int(level) - 1]

    def __call__(self, img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
        """Distort ``img`` (H, W, 3) float32 in [0, 1] at ``level``; returns (H, W, 3) float32 in [0, 1]."""
        check_image(img, self.name)
        strength = self.strength(level)
        if not self.available():
            raise RuntimeError(f"distortion '{self.name}' needs Pillow's '{self.codec}' codec, which this Pillow lacks")
        out = self.apply(img, strength, rng, **self.options)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def as_dict(self) -> dict:
        """Plain-data description (for the manifest and the docs)."""
        return {
            "name": self.name,
            "kadid_id": self.kadid_id,
            "kadid_name": self.kadid_name,
            "group": self.group,
            "description": self.description,
            "parameter": self.parameter,
            "strengths": list(self.strengths),
            "options": dict(self.options),
            "available": self.available(),
        }


def check_image(img: np.ndarray, context: str) -> None:
    """Raise a ValueError naming ``context`` unless ``img`` is (H, W, 3) float32 in [0, 1]."""
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        shape = getattr(img, "shape", type(img).__name__)
        raise ValueError(f"{context}: expected an (H, W, 3) array, got {shape}")
    if img.dtype != np.float32:
        raise ValueError(f"{context}: expected float32 pixels in [0, 1], got dtype {img.dtype}")
    if img.size and (float(img.min()) < 0.0 or float(img.max()) > 1.0 or not np.isfinite(img).all()):
        raise ValueError(f"{context}: pixel values must lie in [0, 1]")


def _entry(kadid_id, name, kadid_name, group, parameter, strengths, apply, description, options=None, codec=None):
    return DistortionType(
        name=name,
        kadid_id=kadid_id,
        kadid_name=kadid_name,
        group=group,
        description=description,
        parameter=parameter,
        strengths=tuple(float(s) for s in strengths),
        apply=apply,
        options=MappingProxyType(dict(options or {})),
        codec=codec,
    )


# Strengths were chosen so that level 1 is just visible and level 5 is severe on a
# 512 px image, with roughly even perceptual steps in between (docs/synthetic.md).
DISTORTIONS: tuple[DistortionType, ...] = (
    _entry(1, "gaussian_blur", "gaussian blur", "blur", "sigma_px", (0.5, 1.0, 2.0, 3.5, 6.0),
           blur.gaussian_blur, "Gaussian low-pass filter"),
    _entry(2, "lens_blur", "lens blur", "blur", "radius_px", (1.0, 2.0, 3.5, 5.5, 8.0),
           blur.lens_blur, "defocus: convolution with a uniform disk"),
    _entry(3, "motion_blur", "motion blur", "blur", "length_px", (3, 6, 10, 16, 24),
           blur.motion_blur, "linear motion blur in a random direction"),
    _entry(4, "color_diffusion", "color diffusion", "color", "sigma_px", (1.0, 3.0, 6.0, 10.0, 16.0),
           chromatic.colour_diffusion, "Gaussian blur of the a*, b* chroma planes; lightness kept"),
    _entry(5, "color_shift", "color shift", "color", "distance_px", (1.0, 2.0, 4.0, 7.0, 11.0),
           chromatic.colour_shift, "one RGB plane translated in a random direction"),
    _entry(6, "color_quantization", "color quantization", "color", "colours", (64, 32, 16, 8, 4),
           chromatic.colour_quantisation, "palette reduction (median cut, no dithering)"),
    _entry(7, "color_saturation_down", "color saturation 1", "color", "chroma_kept", (0.75, 0.55, 0.38, 0.2, 0.0),
           chromatic.desaturate, "desaturation: a*, b* scaled down"),
    _entry(8, "color_saturation_up", "color saturation 2", "color", "chroma_gain", (1.4, 1.8, 2.4, 3.2, 4.5),
           chromatic.oversaturate, "over-saturation: a*, b* scaled up, clipped to the sRGB gamut"),
    _entry(9, "jpeg2000", "jpeg2000", "compression", "target_psnr_db", (33, 30, 27, 24, 21),
           compression.jpeg2000, "JPEG2000 compression (OpenJPEG via Pillow)", codec="jpg_2000"),
    _entry(10, "jpeg", "jpeg", "compression", "quality", (43, 20, 10, 5, 2),
           compression.jpeg, "JPEG compression (libjpeg via Pillow), 4:2:0 chroma"),
    _entry(11, "white_noise", "white noise", "noise", "sigma", (0.02, 0.04, 0.07, 0.11, 0.16),
           noise.white_noise, "additive white Gaussian noise, independent per RGB channel"),
    _entry(12, "white_noise_color_component", "white noise in color component", "noise", "sigma",
           (0.03, 0.06, 0.1, 0.15, 0.22), noise.white_noise_colour_component,
           "additive Gaussian noise in YCbCr, mostly on the chroma planes", {"luma_fraction": 0.25}),
    _entry(13, "impulse_noise", "impulse noise", "noise", "density", (0.01, 0.03, 0.06, 0.1, 0.16),
           noise.impulse_noise, "salt-and-pepper noise"),
    _entry(14, "multiplicative_noise", "multiplicative noise", "noise", "sigma", (0.05, 0.1, 0.18, 0.28, 0.4),
           noise.multiplicative_noise, "speckle: values times (1 + Gaussian noise)"),
    _entry(15, "denoise", "denoise", "noise", "sigma", (0.03, 0.06, 0.1, 0.15, 0.22),
           noise.denoise_artefacts, "Gaussian noise removed again by a local Wiener filter", {"window": 5}),
    _entry(16, "brighten", "brighten", "brightness", "gamma", (1.2, 1.45, 1.8, 2.3, 3.0),
           brightness.brighten, "power curve x^(1/gamma) lifting mid-tones"),
    _entry(17, "darken", "darken", "brightness", "gamma", (1.2, 1.45, 1.8, 2.3, 3.0),
           brightness.darken, "power curve x^gamma crushing mid-tones"),
    _entry(18, "mean_shift", "mean shift", "brightness", "shift", (0.04, 0.08, 0.13, 0.2, 0.28),
           brightness.mean_shift, "constant added or subtracted (random sign), clipped"),
    _entry(19, "jitter", "jitter", "spatial", "amplitude_px", (0.5, 1.0, 2.0, 3.0, 5.0),
           spatial.jitter, "every pixel displaced by a random offset"),
    _entry(20, "non_eccentricity_patch", "non-eccentricity patch", "spatial", "cell_fraction_hit",
           (0.02, 0.05, 0.1, 0.16, 0.25), spatial.non_eccentricity_patch,
           "grid cells replaced by nearby patches of the same image", {"cell_fraction": 1 / 16}),
    _entry(21, "pixelate", "pixelate", "spatial", "block_px", (2, 3, 5, 8, 12),
           spatial.pixelate, "tiles replaced by their mean colour"),
    _entry(22, "quantization", "quantization", "spatial", "steps", (16, 10, 7, 5, 3),
           spatial.quantisation, "uniform quantisation of each channel (banding)"),
    _entry(23, "color_block", "color block", "spatial", "cell_fraction_hit", (0.01, 0.025, 0.05, 0.08, 0.12),
           spatial.colour_block, "grid cells painted a flat random colour", {"cell_fraction": 1 / 16}),
    _entry(24, "high_sharpen", "high sharpen", "sharpness_contrast", "amount", (0.5, 1.0, 2.0, 3.5, 6.0),
           sharpness.high_sharpen, "over-sharpening by unsharp masking", {"radius": 1.5}),
    _entry(25, "contrast_change", "contrast change", "sharpness_contrast", "contrast",
           (0.75, 0.58, 0.43, 0.3, 0.18), sharpness.contrast_change, "contrast reduced towards the mean luma"),
)

_BY_NAME: Mapping[str, DistortionType] = MappingProxyType({d.name: d for d in DISTORTIONS})


def list_distortions() -> tuple[DistortionType, ...]:
    """All 25 types in KADID-10k order (each has .name, .group, .description, .strengths)."""
    return DISTORTIONS


def get_distortion(name: str) -> DistortionType:
    """The type called ``name``; a ValueError lists the known names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown distortion type '{name}'; known types: {', '.join(_BY_NAME)}") from None
