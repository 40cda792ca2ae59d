"""Turn what a caller hands a classical measure (a path, a PIL image, an array) into pixels.

Accepted sources:

* a path (``str`` or ``os.PathLike``): decoded with Pillow, EXIF orientation applied;
* a ``PIL.Image.Image``: used as it is (no EXIF rotation: the caller already opened it);
* a ``numpy`` array of dtype ``uint8``, shape (H, W, 3) (RGB) or (H, W) (grey).

Every Pillow mode becomes 8-bit RGB the way the scoring pipeline does it (docs/inference.md):
transparency is composited onto white, 16-bit and 32-bit integer grey are scaled to 8 bits, the rest
goes through ``Image.convert("RGB")``. This module deliberately does not import
``perceptiq.inference.images`` (which pulls in torch through the CLIP preprocessing): the classical
measures depend on numpy, scipy and Pillow only.

Any failure raises :class:`ImageInputError` whose message names the source and the reason.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ImageSource = str | os.PathLike | Image.Image | np.ndarray

#: ITU-R BT.601 luma weights (R, G, B), the weights of MATLAB's ``rgb2gray`` and Pillow's "L" mode,
#: which the NIQE and BRISQUE reference implementations use to get their grey image.
BT601_LUMA = (0.299, 0.587, 0.114)

ALPHA_BACKGROUND = (255, 255, 255)  # the same white the scoring pipeline composites transparency onto


class ImageInputError(ValueError):
    """An image source that cannot be turned into 8-bit RGB pixels; the message names it and says why."""


def describe_source(source: object) -> str:
    """A short name for ``source`` in error messages: the path, or the kind of object and its size."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, Image.Image):
        return f"PIL image {source.width}x{source.height} ({source.mode})"
    if isinstance(source, np.ndarray):
        return f"array of shape {source.shape} ({source.dtype})"
    return f"object of type {type(source).__name__}"


def load_rgb_array(source: ImageSource) -> np.ndarray:
    """Pixels of ``source`` as a C-contiguous uint8 array of shape (H, W, 3)."""
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        return np.ascontiguousarray(np.asarray(_pil_to_rgb(source, describe_source(source))))
    if isinstance(source, (str, os.PathLike)):
        return np.ascontiguousarray(np.asarray(_decode_path(Path(source))))
    raise ImageInputError(
        f"{describe_source(source)}: expected a path, a PIL image or a uint8 array of shape (H, W, 3) or (H, W)"
    )


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an (H, W, 3) uint8 RGB array: (H, W) float64 on the 0-255 scale, not rounded."""
    pixels = rgb.astype(np.float64)
    red, green, blue = BT601_LUMA
    return red * pixels[..., 0] + green * pixels[..., 1] + blue * pixels[..., 2]


def load_luminance(source: ImageSource) -> np.ndarray:
    """:func:`luminance` of :func:`load_rgb_array` of ``source``: (H, W) float64 in [0, 255]."""
    return luminance(load_rgb_array(source))


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    name = describe_source(array)
    if array.dtype != np.uint8:
        raise ImageInputError(
            f"{name}: arrays must be uint8 (0-255); convert floats explicitly, e.g. "
            "(np.clip(x, 0, 1) * 255).round().astype(np.uint8), so the scale is not guessed"
        )
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim != 3 or array.shape[2] != 3:
        raise ImageInputError(f"{name}: expected shape (H, W, 3) or (H, W)")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageInputError(f"{name}: the image is empty")
    return np.ascontiguousarray(array)


def _decode_path(path: Path) -> Image.Image:
    if not path.exists():
        raise ImageInputError(f"{path}: file not found")
    if path.is_dir():
        raise ImageInputError(f"{path}: is a directory, not an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()
                upright = ImageOps.exif_transpose(opened)
                return _pil_to_rgb(upright, str(path))
    except ImageInputError:
        raise
    except UnidentifiedImageError:
        raise ImageInputError(f"{path}: not an image (Pillow cannot identify it)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageInputError(f"{path}: cannot decode image ({type(error).__name__}: {error})") from None


def _pil_to_rgb(image: Image.Image, name: str) -> Image.Image:
    if image.width == 0 or image.height == 0:
        raise ImageInputError(f"{name}: the image is empty")
    try:
        if image.mode == "RGB":
            return image
        if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            # 16/32-bit grey: Pillow's convert("RGB") would clip at 255; scale by the type's range instead
            values = np.asarray(image, dtype=np.float64)
            top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
            grey = np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
            return Image.fromarray(grey, "L").convert("RGB")
        if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")
    except (OSError, ValueError) as error:
        raise ImageInputError(f"{name}: cannot convert mode {image.mode} to RGB ({error})") from None
