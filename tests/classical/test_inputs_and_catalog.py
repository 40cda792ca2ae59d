"""Image inputs of the classical measures, and their catalogue (metadata as data)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from perceptiq.classical import (
    ImageInputError,
    LaplacianVariance,
    NIQEModel,
    create_measure,
    get_measure_spec,
    list_measures,
    load_rgb_array,
)


def test_sources_of_every_kind_give_the_same_pixels(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "image.png"
    Image.fromarray(pixels).save(path)
    for source in (pixels, Image.fromarray(pixels), path, str(path)):
        np.testing.assert_array_equal(load_rgb_array(source), pixels)
    grey = pixels[:, :, 0]
    np.testing.assert_array_equal(load_rgb_array(grey), np.repeat(grey[:, :, None], 3, axis=2))


def test_transparency_is_composited_on_white_and_16_bit_is_scaled():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 3] = 0                      # fully transparent black
    np.testing.assert_array_equal(load_rgb_array(Image.fromarray(rgba, "RGBA")), np.full((4, 4, 3), 255))
    deep = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert deep.mode.startswith("I;16")
    np.testing.assert_array_equal(load_rgb_array(deep), np.full((4, 4, 3), 255))


def test_exif_orientation_is_applied_to_files(tmp_path):
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6                      # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    assert load_rgb_array(path).shape == (20, 10, 3)


def test_bad_sources_fail_with_the_reason(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    cases = [
        (tmp_path / "missing.png", "missing.png: file not found"),
        (tmp_path, "is a directory"),
        (broken, "broken.jpg: cannot decode image"),
        (text, "notes.png: not an image"),
        (np.zeros((4, 4, 3), np.float32), "arrays must be uint8"),
        (np.zeros((4, 4, 4), np.uint8), r"expected shape \(H, W, 3\)"),
        (12, "expected a path, a PIL image or a uint8 array"),
    ]
    for source, message in cases:
        with pytest.raises(ImageInputError, match=message):
            load_rgb_array(source)


def test_catalogue_metadata():
    names = [spec.name for spec in list_measures()]
    assert names == ["niqe", "laplacian_variance"]
    niqe, laplacian = get_measure_spec("niqe"), get_measure_spec("laplacian_variance")
    assert niqe.higher_is_better is False and niqe.needs_fitting is True
    assert laplacian.higher_is_better is True and laplacian.needs_fitting is False
    assert niqe.score_range == (0.0, math.inf)
    assert "Mittal" in niqe.citation and "2013" in niqe.citation
    assert niqe.to_dict()["score_range"] == [0.0, None]
    assert LaplacianVariance().spec == laplacian and LaplacianVariance().higher_is_better


def test_unknown_measure_gets_a_did_you_mean():
    with pytest.raises(KeyError, match="Did you mean 'niqe'"):
        get_measure_spec("nqie")


def test_create_measure(tmp_path):
    assert isinstance(create_measure("laplacian_variance"), LaplacianVariance)
    with pytest.raises(ValueError, match="must be fitted first"):
        create_measure("niqe")
    rng = np.random.default_rng(0)
    images = [np.clip(128 + rng.normal(0, 30, (64, 64, 3)), 0, 255).astype(np.uint8) for _ in range(2)]
    path = NIQEModel.fit(images, patch_size=16).save(tmp_path / "niqe.json")
    loaded = create_measure("niqe", params=path)
    assert isinstance(loaded, NIQEModel) and loaded.settings.patch_size == 16
    with pytest.raises(ValueError, match="takes no params"):
        create_measure("laplacian_variance", params=path)


def test_the_classical_package_imports_no_model_code_and_no_torch():
    import subprocess
    import sys

    code = ("import sys, perceptiq.classical, perceptiq.evaluation.level_ranking; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('perceptiq.models', 'perceptiq.inference'))]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
