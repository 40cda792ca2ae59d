"""Encoding distorted images for the dataset folder.

The label must describe the file on disk, so ``encode`` returns both the bytes to
write and the image a reader will decode from them (for JPEG output that adds the
storage codec's own, mild, loss).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .colour import from_uint8, to_uint8


@dataclass(frozen=True)
class OutputFormat:
    """One storage format: file suffix, Pillow format name and save options."""

    suffix: str
    pillow_format: str
    lossless: bool
    save_options: dict = field(default_factory=dict)


# High-quality, no-subsampling JPEG so that storage adds little on top of the distortion.
OUTPUT_FORMATS: dict[str, OutputFormat] = {
    "png": OutputFormat(".png", "PNG", lossless=True, save_options={"compress_level": 3}),
    "jpg": OutputFormat(".jpg", "JPEG", lossless=False, save_options={"quality": 95, "subsampling": "4:4:4"}),
}


def output_format(name: str) -> OutputFormat:
    try:
        return OUTPUT_FORMATS[name]
    except KeyError:
        raise ValueError(f"image_format must be one of {sorted(OUTPUT_FORMATS)}, got {name!r}") from None


def encode(img: np.ndarray, fmt: OutputFormat) -> tuple[bytes, np.ndarray]:
    """(H, W, 3) float image in [0, 1] -> (file bytes, (H, W, 3) float32 image as stored)."""
    pixels = to_uint8(img)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format=fmt.pillow_format, **fmt.save_options)
    data = buffer.getvalue()
    if fmt.lossless:
        return data, from_uint8(pixels)
    with Image.open(io.BytesIO(data)) as decoded:
        return data, from_uint8(np.asarray(decoded.convert("RGB")))
