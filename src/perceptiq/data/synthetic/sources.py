"""Finding and reading the pristine (reference) images of a synthetic dataset.

Only reading lives here; a file that cannot be decoded raises ``UnreadableImageError``
naming the file, and ``generate.synthesize`` turns that into a skipped entry.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .colour import from_uint8

# File name endings read as images (compared case-insensitively).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Below this the patch distortions have fewer than 2 x 2 cells and JPEG2000 one resolution.
MIN_SIDE_PX = 16


class UnreadableImageError(ValueError):
    """A source image could not be decoded or is unusable; the message names the file."""


def list_source_images(src_dir: Path, exclude: Path | None = None) -> list[Path]:
    """Image files under ``src_dir`` (recursively), sorted by relative path.

    ``exclude`` (typically the output folder when it lies inside ``src_dir``) is
    skipped so that a second run does not read its own outputs as references.
    """
    exclude = exclude.resolve() if exclude is not None else None
    found = []
    for path in src_dir.rglob("*"):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if exclude is not None and path.resolve().is_relative_to(exclude):
            continue
        found.append(path)
    return sorted(found, key=lambda p: p.relative_to(src_dir).as_posix())


def load_pristine(path: Path, max_side: int | None) -> np.ndarray:
    """Read ``path`` as (H, W, 3) float32 sRGB in [0, 1], upright (EXIF), 8-bit exact.

    Images whose longer side exceeds ``max_side`` are shrunk (Lanczos) to that side;
    smaller images are never enlarged. Alpha is dropped, grey and palette images
    are expanded to RGB. Raises ``UnreadableImageError`` for anything unusable.
    """
    try:
        with warnings.catch_warnings():
            # Pillow's decompression-bomb warning becomes an error here: a 100 MP "reference"
            # is almost certainly a mistake, and the error is reported as a skipped file.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                picture = ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnreadableImageError(f"{path}: cannot decode image ({type(error).__name__}: {error})") from error
    if max_side is not None and max(picture.size) > max_side:
        scale = max_side / max(picture.size)
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    if min(picture.size) < MIN_SIDE_PX:
        raise UnreadableImageError(
            f"{path}: image is {picture.width}x{picture.height} px after resizing; both sides must be >= {MIN_SIDE_PX}"
        )
    return from_uint8(np.asarray(picture))


def reference_id(relative: Path, taken: set[str]) -> str:
    """A file-name-safe, unique id for a source at ``relative`` (path inside the source folder).

    Sub-folders are joined with "__", other unsafe characters become "_"; a clash
    (e.g. ``a.png`` and ``a.jpg``) gets the original suffix appended.
    """
    stem = "__".join(relative.with_suffix("").parts)
    candidate = re.sub(r"[^A-Za-z0-9._-]", "_", stem)
    if candidate in taken:
        candidate = f"{candidate}_{relative.suffix.lstrip('.').lower()}"
    base, counter = candidate, 2
    while candidate in taken:
        candidate, counter = f"{base}_{counter}", counter + 1
    taken.add(candidate)
    return candidate
