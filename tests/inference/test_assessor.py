"""The public Python API: load_model(...).score(paths | PIL images | numpy images | tensor) -> ScoreResults."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr

import perceptiq
from perceptiq.inference import load_model

from ..conftest import textured_image


@pytest.fixture(scope="module")
def model():
    return perceptiq.load_model("zero-shot", backbone="test-tiny", weights="random", device="cpu", precision="fp32")


def test_paths_pil_and_tensor_give_the_same_scores(model, image_folder):
    files = sorted(image_folder.glob("img*.jpg"))
    from_paths = model.score(files).scores
    images = [Image.open(f) for f in files]
    from_pil = model.score(images).scores
    from_tensor = model.score(torch.stack([model.preprocess(f) for f in files])).scores
    assert from_paths.shape == (4,)
    np.testing.assert_allclose(from_paths, from_pil, atol=1e-6)
    np.testing.assert_allclose(from_paths, from_tensor, atol=1e-6)


def test_same_image_always_gets_the_same_score(model, image_folder, tmp_path):
    path = image_folder / "img1.jpg"
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(path.read_bytes())
    first = model.score([path, copy], batch_size=1)
    again = load_model("zero-shot", backbone="test-tiny", weights="random", device="cpu",
                       precision="fp32").score(path)
    assert first[0].score == first[1].score == again[0].score


def test_folder_with_a_bad_file_gives_nan_and_a_warning(model, image_folder):
    with pytest.warns(UserWarning, match="broken.jpg"):
        results = model.score(image_folder)
    assert len(results) == 6 and np.isnan(results.scores).sum() == 1
    (bad,) = results.failed
    assert bad.path.endswith("broken.jpg") and bad.error.startswith("corrupt or truncated") and bad.score is None


def test_batch_size_does_not_change_scores(model, image_folder):
    files = sorted(image_folder.glob("img*.jpg"))
    np.testing.assert_allclose(model.score(files, batch_size=1), model.score(files, batch_size=3), atol=1e-6)


def varied_images(n: int = 24) -> list[Image.Image]:
    """Flat colours, pure noise, textures and textures with random gain and noise."""
    rng = np.random.default_rng(0)
    images = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            array = np.full((120, 160, 3), rng.integers(0, 255, 3), np.uint8)
        elif kind == 1:
            array = rng.integers(0, 255, (120, 160, 3)).astype(np.uint8)
        else:
            array = np.asarray(textured_image(i, (160, 120))).astype(np.float64)
            if kind == 3:
                array = array * rng.uniform(0.2, 1.5) + rng.normal(0, rng.uniform(0, 60), array.shape)
            array = np.clip(array, 0, 255).astype(np.uint8)
        images.append(Image.fromarray(array))
    return images


def test_bf16_ranks_images_like_fp32():
    """A random tiny CLIP spreads scores by only ~0.02, so bf16 rounding (~0.005 here) can swap near-ties;
    the bar is therefore SRCC >= 0.98 with every score within 0.01 of fp32's."""
    images = varied_images()
    fp32 = load_model("zero-shot", backbone="test-tiny", weights="random", device="cpu", precision="fp32")
    bf16 = load_model("zero-shot", backbone="test-tiny", weights="random", device="cpu", precision="bf16")
    a, b = fp32.score(images).scores, bf16.score(images).scores
    assert bf16.precision == "bf16"
    assert spearmanr(a, b)[0] >= 0.98
    assert np.abs(a - b).max() < 0.01


def test_describe_reports_metadata(model):
    info = model.describe()
    assert info["model"] == "zero-shot" and info["backbone"] == "test-tiny" and info["weights"] == "random"
    assert info["score_range"] == [0.0, 1.0] and info["higher_is_better"] is True
    assert info["prompts"]["levels"][0] == "bad-quality image"
    assert info["view"] == "resize"


@pytest.mark.parametrize("name", ["zero-shot", "zero-shot-antonym", "gamma", "grmp-iqa", "perceptiq-tiny"])
def test_describe_prompts_is_a_dict_of_text_lists_for_every_model(name):
    backbone = None if name == "perceptiq-tiny" else "test-tiny"
    weights = None if name == "perceptiq-tiny" else "random"
    options = {"n_layers": 2} if name == "gamma" else {}
    prompts = load_model(name, backbone=backbone, weights=weights, device="cpu", **options).describe()["prompts"]
    assert isinstance(prompts, dict) and len(prompts) >= 2 and "summary" in prompts
    assert all(isinstance(texts, list) and texts and all(isinstance(t, str) and t for t in texts)
               for texts in prompts.values())


def test_results_carry_paths_scores_and_crops_in_input_order(model, image_folder):
    files = [image_folder / "img2.jpg", image_folder / "sub", image_folder / "img0.jpg"]
    results = model.score(files)
    assert results.paths == [str(image_folder / "img2.jpg"), str(image_folder / "sub" / "deep.png"),
                             str(image_folder / "img0.jpg")]
    for result in results:
        assert result.ok and result.crop_scores == [result.score] and result.view == "resize"
        assert float(result) == result.score and len(result.boxes) == 1
    np.testing.assert_array_equal(np.asarray(results), results.scores)


def test_numpy_images_score_like_pil(model):
    images = varied_images(4)
    arrays = [np.asarray(image) for image in images]
    expected = model.score(images).scores
    np.testing.assert_allclose(model.score(arrays).scores, expected, atol=1e-6)
    np.testing.assert_allclose(model.score(np.stack(arrays)).scores, expected, atol=1e-6)      # [B,H,W,3]
    np.testing.assert_allclose(model.score(arrays[0].astype(np.float32) / 255).scores, expected[:1], atol=2e-3)
    grey = np.asarray(images[1].convert("L"))
    np.testing.assert_allclose(model.score(grey).scores, model.score(images[1].convert("L")).scores, atol=1e-6)
    with pytest.raises(ValueError, match="H x W"):
        model.score(np.zeros((5, 6, 7, 2), np.uint8))
    with pytest.raises(TypeError, match="cannot score a int"):
        model.score([3])


def test_a_wrong_sized_tensor_gets_a_clear_error(model):
    with pytest.raises(ValueError, match=r"must be 224x224 model input.*got 100x120"):
        model.score(torch.zeros(2, 3, 100, 120))
    with pytest.raises(ValueError, match=r"\[B,3,224,224\].*got shape \[2, 1, 224, 224\]"):
        model.score(torch.zeros(2, 1, 224, 224))
    full = model.score(torch.zeros(1, 3, 128, 160), view="full")
    assert full[0].ok and full[0].view == "full"


def test_bf16_ranks_images_like_fp32_on_the_trained_builtin_model():
    """Issue 6's bar on a trained model: SRCC >= 0.999 between bf16 and fp32 scores of 120 varied images
    (the example photos under 8 synthetic distortion types at 3 levels, plus the originals)."""
    from perceptiq.data.synthetic import get_distortion

    rng = np.random.default_rng(0)
    images = []
    for path in sorted((Path(__file__).parents[2] / "examples" / "images").glob("*.jpg")):
        photo = Image.open(path).convert("RGB")
        photo.thumbnail((256, 256))
        pixels = np.asarray(photo, dtype=np.float32) / 255
        images.append(photo)
        for name in ("gaussian_blur", "white_noise", "jpeg", "darken", "contrast_change", "pixelate",
                     "color_saturation_down", "impulse_noise"):
            for level in (1, 3, 5):
                distorted = get_distortion(name)(pixels, level, rng)
                images.append(Image.fromarray((distorted * 255).round().astype(np.uint8)))
    fp32 = load_model("perceptiq-tiny", device="cpu", precision="fp32")
    bf16 = load_model("perceptiq-tiny", device="cpu", precision="bf16")
    a, b = fp32.score(images).scores, bf16.score(images).scores
    assert len(images) >= 120 and np.std(a) > 0.05       # a real spread of scores to rank
    print(f"\nbf16 vs fp32 on {len(images)} images: SRCC {spearmanr(a, b)[0]:.5f}, max |diff| {np.abs(a - b).max():.4f}")
    assert spearmanr(a, b)[0] >= 0.999, spearmanr(a, b)[0]
