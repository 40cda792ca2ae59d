"""The benchmark's inputs: photo-sized JPEG files written to a temporary folder, and tensors in place.

The JPEGs imitate what a scoring run reads: ``width × height`` pixels (1024×768 by default), smooth
colour fields with edges and fine texture so the encoded size (≈100–300 kB at quality 90) and the
decoder's work are those of a photograph, not of a flat or pure-noise image. Seeded: the same seed gives
the same files, so perceptiq and the peer read identical bytes.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def _photo_like(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """[H, W, 3] uint8: a low-frequency colour field (upsampled coarse noise), a few hard-edged
    rectangles and per-pixel grain."""
    coarse = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    for _ in range(rng.integers(3, 8)):
        x0, y0 = int(rng.integers(0, width - 16)), int(rng.integers(0, height - 16))
        x1, y1 = int(rng.integers(x0 + 8, width)), int(rng.integers(y0 + 8, height))
        field[y0:y1, x0:x1] = 0.5 * field[y0:y1, x0:x1] + 0.5 * rng.uniform(0, 255, size=3)
    field += rng.normal(0, 8, size=field.shape).astype(np.float32)
    return np.clip(field, 0, 255).astype(np.uint8)


def write_jpegs(folder: str | os.PathLike, n_images: int, *, width: int = 1024, height: int = 768,
                quality: int = 90, seed: int = 0) -> list[str]:
    """Write ``n_images`` JPEGs named ``img_0000.jpg`` ... into ``folder``; returns their paths in order.

    Files already there with the right name are kept (reruns into the same folder are cheap).
    """
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    if width < 32 or height < 32:
        raise ValueError(f"benchmark images must be at least 32×32, got {width}×{height}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n_images):
        path = folder / f"img_{index:04d}.jpg"
        if not path.exists():
            rng = np.random.default_rng([seed, index])
            Image.fromarray(_photo_like(rng, width, height)).save(path, quality=quality)
        paths.append(str(path))
    return paths


def mean_file_bytes(paths: list[str]) -> float:
    return float(np.mean([os.path.getsize(p) for p in paths])) if paths else 0.0
