"""Views (resize, crops:N, full): parsing, crop geometry, pixels against a reference, the native-
resolution ViT hook, and the same scores from every way of calling the model."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from perceptiq.backbones.native_resolution import interpolate_position_embedding
from perceptiq.imaging import CLIP_MEAN, CLIP_STD, View, ViewError, ViewTransform, crop_positions, parse_view
from perceptiq.imaging.views import grid_shape
from perceptiq.inference import load_model

from ..conftest import textured_image


@pytest.fixture(scope="module")
def model():
    return load_model("zero-shot", backbone="test-tiny", weights="random", device="cpu", precision="fp32")


def normalised(array: np.ndarray) -> torch.Tensor:
    """Reference: uint8 [h,w,3] -> CLIP-normalised [3,h,w]."""
    x = torch.tensor(array, dtype=torch.float64).permute(2, 0, 1) / 255
    return ((x - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)).float()


# --------------------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("text, canonical", [
    ("resize", "resize"), ("crops:10", "crops:10"), ("CROPS:4, random", "crops:4,random"),
    ("crops:5,resize=512,seed=3,random", "crops:5,random,resize=512,seed=3"), ("crops:3,grid", "crops:3"),
    ("full", "full"), ("full,max=500000", "full,max=500000"),
])
def test_views_parse_and_print_canonically(text, canonical):
    view = parse_view(text)
    assert str(view) == canonical and parse_view(canonical) == view


@pytest.mark.parametrize("text, message", [
    ("crops", "crops needs a count"), ("crops:0", "N >= 1"), ("crop:3", "unknown view 'crop'"),
    ("resize:3", "only crops takes a count"), ("crops:3,sideways", "option 'sideways'"),
    ("full,max=-1", "option 'max=-1'"), ("", "empty view"),
])
def test_bad_views_are_refused_with_the_grammar(text, message):
    with pytest.raises(ViewError, match=message) as info:
        parse_view(text)
    assert "crops:N" in str(info.value)


# ------------------------------------------------------------------------------------ geometry

def test_grid_crops_span_the_image_edge_to_edge_and_differ():
    positions = crop_positions(1000, 600, 224, 10)
    assert len(set(positions)) == 10 and grid_shape(10, 1000, 600) == (3, 4)
    lefts, tops = {x for x, _ in positions}, {y for _, y in positions}
    assert min(lefts) == 0 and max(lefts) == 1000 - 224 and min(tops) == 0 and max(tops) == 600 - 224
    assert crop_positions(1000, 600, 224, 1) == [(388, 188)]            # one crop: the centre


def test_random_crops_are_seeded_by_view_seed_and_image_size_only():
    a = crop_positions(900, 700, 224, 8, "random", seed=0)
    assert a == crop_positions(900, 700, 224, 8, "random", seed=0)
    assert a != crop_positions(900, 700, 224, 8, "random", seed=1)
    assert len(set(a)) == 8 and all(0 <= x <= 900 - 224 and 0 <= y <= 700 - 224 for x, y in a)


def test_crop_pixels_are_the_native_pixels_of_their_box():
    image = textured_image(3, (700, 500))
    array = np.asarray(image)
    vi = ViewTransform(parse_view("crops:6,random,seed=2"), size=224)(image)
    assert vi.pixels.shape == (6, 3, 224, 224) and len(vi.boxes) == 6
    for pixels, (left, top, right, bottom) in zip(vi.pixels, vi.boxes):
        x, y = round(left * 700), round(top * 500)
        assert (round(right * 700) - x, round(bottom * 500) - y) == (224, 224)
        torch.testing.assert_close(pixels, normalised(array[y:y + 224, x:x + 224]), atol=1e-5, rtol=0)


def test_crops_pre_resize_and_small_images():
    image = textured_image(1, (1200, 800))
    vi = ViewTransform(parse_view("crops:4,resize=400"), size=224)(image)
    resized = np.asarray(image.resize((600, 400), Image.Resampling.BICUBIC))
    left, top = round(vi.boxes[0][0] * 600), round(vi.boxes[0][1] * 400)
    torch.testing.assert_close(vi.pixels[0], normalised(resized[top:top + 224, left:left + 224]), atol=1e-5,
                               rtol=0)
    small = ViewTransform(parse_view("crops:3"), size=224)(textured_image(2, (150, 100)))
    assert small.pixels.shape == (3, 3, 224, 224)                      # upscaled to fit one crop


def test_full_view_trims_to_patches_scales_to_budget_and_upscales_small():
    odd = ViewTransform(parse_view("full"), size=224, patch=16)(textured_image(0, (333, 250)))
    assert odd.pixels.shape == (1, 3, 240, 320)
    box = odd.boxes[0]
    assert box == pytest.approx((6 / 333, 5 / 250, 326 / 333, 245 / 250))
    big = ViewTransform(parse_view("full,max=100000"), size=224, patch=16)(textured_image(0, (800, 600)))
    h, w = big.pixels.shape[-2:]
    assert h * w <= 100_000 and abs(w / h - 4 / 3) < 0.1
    small = ViewTransform(parse_view("full"), size=224, patch=16)(textured_image(0, (100, 60)))
    assert min(small.pixels.shape[-2:]) >= 224 - 16


# --------------------------------------------------------------------------- the model, any view

def test_position_embedding_interpolation_is_identity_on_the_training_grid():
    embedding = torch.randn(1 + 14 * 14, 32)
    assert interpolate_position_embedding(embedding, (14, 14), (14, 14)) is embedding
    out = interpolate_position_embedding(embedding, (14, 14), (20, 28))
    assert out.shape == (1 + 20 * 28, 32)
    torch.testing.assert_close(out[0], embedding[0])
    back = interpolate_position_embedding(embedding, (14, 14), (28, 28))
    assert back.shape == (1 + 28 * 28, 32)


def test_full_view_runs_any_size_keeps_the_parameters_and_equals_resize_at_native_size(model):
    visual = model.module.backbone.clip.visual
    keys = set(model.module.state_dict())
    square = textured_image(4, (224, 224))
    assert model.score(square, view="full")[0].score == pytest.approx(model.score(square)[0].score, abs=1e-6)
    images = [textured_image(5, (333, 250)), textured_image(6, (480, 320)), textured_image(7, (333, 250))]
    together = model.score(images, view="full", batch_size=8).scores        # two sizes in one call
    alone = [model.score(image, view="full")[0].score for image in images]
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.isfinite(together).all() and together[0] != together[2]
    assert set(model.module.state_dict()) == keys and "positional_embedding" not in visual.__dict__


def test_crop_scores_are_the_model_scores_of_each_crop_and_the_score_their_mean(model, tmp_path):
    image = textured_image(8, (640, 480))
    path = tmp_path / "photo.png"
    image.save(path)
    (result,) = model.score([path], view="crops:5")
    vi = model.view_input(path, view="crops:5")
    direct = model.predict(vi.pixels).scores.double().numpy()
    np.testing.assert_allclose(result.crop_scores, direct, atol=1e-6)
    assert result.score == pytest.approx(direct.mean(), abs=1e-6) and result.boxes == vi.boxes
    assert len(set(result.crop_scores)) > 1                                  # the crops differ


@pytest.mark.parametrize("view", ["resize", "crops:4", "crops:3,random,seed=5", "full"])
def test_paths_pil_numpy_and_workers_give_the_same_scores(model, tmp_path, view):
    images = [textured_image(i, size) for i, size in enumerate([(500, 300), (260, 400), (300, 300)])]
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"im{i}.png")
        image.save(paths[-1])
    expected = model.score(paths, view=view).scores
    np.testing.assert_allclose(model.score(images, view=view).scores, expected, atol=1e-6)
    np.testing.assert_allclose(model.score([np.asarray(i) for i in images], view=view).scores, expected, atol=1e-6)
    np.testing.assert_allclose(model.score(paths, view=view, num_workers=1, batch_size=2).scores, expected,
                               atol=1e-6)
    viewed = load_model("zero-shot", backbone="test-tiny", weights="random", device="cpu", precision="fp32",
                        view=view)
    assert viewed.describe()["view"] == str(parse_view(view))
    np.testing.assert_allclose(viewed.score(paths).scores, expected, atol=1e-6)


def test_full_view_over_the_decode_limit_is_an_error_row(tmp_path):
    capped = load_model("zero-shot", backbone="test-tiny", weights="random", device="cpu", precision="fp32",
                        max_pixels=100_000, view="full")
    textured_image(0, (400, 300)).save(tmp_path / "big.png")
    textured_image(1, (300, 200)).save(tmp_path / "ok.png")
    with pytest.warns(UserWarning, match="big.png"):
        results = capped.score(tmp_path)
    assert results[0].error == "over pixel limit (120000 px > 100000)" and results[1].ok


# ---------------------------------------------------------------------------- AVIF / HEIC files

def test_avif_and_heic_files_are_listed_and_decoded(tmp_path, model):
    pillow_heif = pytest.importorskip("pillow_heif")
    from perceptiq.inference.files import iter_image_files

    image = textured_image(2, (256, 192))
    image.save(tmp_path / "a.avif", quality=95)
    pillow_heif.from_pillow(image).save(tmp_path / "b.heic", quality=95)
    assert [p.name for p in iter_image_files([tmp_path])] == ["a.avif", "b.heic"]
    results = model.score(tmp_path)
    assert all(r.ok for r in results), results.errors
    reference = model.score(image).scores[0]
    assert np.abs(results.scores - reference).max() < 0.02                   # lossy, but the same picture


def test_heic_without_the_extra_is_an_error_row_naming_the_install(tmp_path):
    """In a fresh interpreter where pillow-heif cannot be imported: an error row, not a silent skip."""
    heic = tmp_path / "photo.heic"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    code = ("import sys; sys.modules['pillow_heif'] = None\n"
            "from perceptiq.imaging import load_rgb, ImageDecodeError\n"
            f"try:\n    load_rgb({str(heic)!r})\nexcept ImageDecodeError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == ("unsupported format (HEIC/HEIF needs the heic extra: pip install "
                                  "'perceptiq[heic]' (pillow-heif))"), out.stderr


def test_normalisation_is_torchs_float32_formula_and_runs_no_torch_arithmetic():
    """Views run in the scorer's decode threads, where a torch operation starts an OpenMP team beside the
    model's (it halved perceptiq-tiny's end-to-end rate at 2 threads): the normalisation is numpy's, with
    the values and the channels-last layout of ``(x / 255 - mean) / std`` in torch float32."""
    from torch.profiler import ProfilerActivity, profile

    from perceptiq.imaging.views import _normalise

    stack = np.random.default_rng(4).integers(0, 256, (3, 37, 29, 3), dtype=np.uint8)
    expected = torch.from_numpy(stack).permute(0, 3, 1, 2).float().div(255.0)
    expected = expected.sub(torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)).div(torch.tensor(CLIP_STD).view(1, 3, 1, 1))
    got = _normalise(stack, CLIP_MEAN, CLIP_STD)
    assert got.dtype == torch.float32 and torch.equal(got, expected) and got.stride() == expected.stride()
    image = textured_image(5, (300, 260))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for view in ("crops:3", "resize", "full"):
            ViewTransform(parse_view(view), size=224)(image)
    arithmetic = {e.name for e in prof.events()} & {"aten::div", "aten::div_", "aten::sub", "aten::sub_",
                                                   "aten::mul", "aten::add", "aten::_to_copy", "aten::copy_"}
    assert not arithmetic, arithmetic
