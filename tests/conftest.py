"""Shared fixtures: tiny random CLIP backbones and small real-looking images (no downloads)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _no_weight_env(monkeypatch):
    """Tests never inherit a user's $PERCEPTIQ_WEIGHTS."""
    monkeypatch.delenv("PERCEPTIQ_WEIGHTS", raising=False)


def textured_image(seed: int, size=(96, 80)) -> Image.Image:
    """An image with gradients, edges and noise, different per seed (stands in for a photo)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([
        (xx / w) * 255,
        (yy / h) * 255,
        128 + 100 * np.sin(xx / (3 + seed % 5)) * np.cos(yy / 7),
    ], axis=-1)
    base[h // 3: h // 2, w // 4: w // 2] = rng.integers(0, 255, 3)
    base += rng.normal(0, 12, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


@pytest.fixture
def image_folder(tmp_path):
    """A folder with 5 good JPEG/PNG images (one in a subfolder) and one corrupt file."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(4):
        textured_image(i).save(folder / f"img{i}.jpg", quality=90)
    textured_image(9).save(folder / "sub" / "deep.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return folder
