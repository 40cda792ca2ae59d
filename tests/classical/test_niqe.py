"""NIQE: the distance, the features' wiring, size/texture errors, files, and behaviour on real photos."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from PIL import Image

from perceptiq.classical import (
    NIQEInputError,
    NIQEModel,
    NIQESettings,
    mvg_distance,
    patch_features,
)
from perceptiq.classical.images import luminance
from perceptiq.classical.niqe import FEATURE_NAMES, N_FEATURES, select_sharp_patches

from .photos import FIT_PHOTOS, HELD_OUT_PHOTOS, distort, sample_photo


def textured(seed: int, height: int, width: int) -> np.ndarray:
    """A (H, W, 3) uint8 image with smooth structure, edges and noise (stands in for a photo)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = 128 + 60 * np.sin(xx / (4 + seed)) * np.cos(yy / 9) + 30 * (xx > width / 2)
    base = base[:, :, None] + rng.normal(0, 10, (height, width, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


# -- the distance (NIQE Eq. 10) ------------------------------------------------------------------------
def test_mvg_distance_hand_cases():
    identity = np.eye(2)
    assert mvg_distance([0, 0], identity, [3, 4], identity) == pytest.approx(5.0, rel=1e-14)
    # pooled covariance (diag(1, 3) + diag(3, 1)) / 2 = 2 I -> sqrt(25 / 2)
    assert mvg_distance([0, 0], np.diag([1.0, 3.0]), [3, 4], np.diag([3.0, 1.0])) == pytest.approx(math.sqrt(12.5), rel=1e-14)
    # pooled [[2, 1], [1, 2]] has inverse [[2, -1], [-1, 2]] / 3: d = (1, 1) -> sqrt(2 / 3)
    pooled = np.array([[2.0, 1.0], [1.0, 2.0]])
    assert mvg_distance([1, 1], pooled, [0, 0], pooled) == pytest.approx(math.sqrt(2 / 3), rel=1e-13)
    assert mvg_distance([1, 2], identity, [1, 2], 3 * identity) == 0.0


def test_mvg_distance_uses_the_pseudo_inverse_for_singular_covariances():
    # nobody varies along the second axis: the pseudo-inverse ignores it (d2 = 7 contributes nothing)
    singular = np.diag([4.0, 0.0])
    assert mvg_distance([0, 0], singular, [2, 7], singular) == pytest.approx(1.0, rel=1e-14)


# -- features ------------------------------------------------------------------------------------------
def test_patch_features_shape_grid_and_crop():
    grey = luminance(textured(0, 100, 250))        # 1 x 2 whole 96-px patches; the rest is cropped
    found = patch_features(grey)
    assert found.grid == (1, 2)
    assert found.features.shape == (2, N_FEATURES) and len(FEATURE_NAMES) == N_FEATURES
    assert found.sharpness.shape == (2,)
    assert np.all(np.isfinite(found.features))
    cropped = patch_features(grey[:96, :192])
    np.testing.assert_array_equal(found.features, cropped.features)


def test_features_of_the_transposed_image_swap_horizontal_and_vertical():
    """Transposing the image maps horizontal neighbours onto vertical ones and keeps both diagonals, so
    the h_* and v_* columns swap and the rest stay (patch (r, c) becomes patch (c, r))."""
    grey = luminance(textured(1, 192, 288))
    found, transposed = patch_features(grey), patch_features(grey.T.copy())
    rows, cols = found.grid
    order = np.arange(rows * cols).reshape(rows, cols).T.ravel()   # transposed patch order
    swapped = list(FEATURE_NAMES)
    index = {name: i for i, name in enumerate(FEATURE_NAMES)}
    for i, name in enumerate(FEATURE_NAMES):
        scale, rest = name.split("_", 1)
        if rest.startswith("h_"):
            swapped[i] = f"{scale}_v_{rest[2:]}"
        elif rest.startswith("v_"):
            swapped[i] = f"{scale}_h_{rest[2:]}"
    permutation = [index[name] for name in swapped]
    # Pillow resamples rows then columns in float32, so the second scale differs by float32 rounding
    np.testing.assert_allclose(transposed.features[:, permutation], found.features[order], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(transposed.sharpness, found.sharpness[order], rtol=1e-12)


def test_sharp_patch_selection_uses_the_fraction_of_the_maximum():
    sharpness = np.array([10.0, 7.5, 7.6, 2.0, 0.0])
    np.testing.assert_array_equal(select_sharp_patches(sharpness, 0.75), [True, False, True, False, False])
    assert not select_sharp_patches(np.zeros(3), 0.75).any()


# -- errors --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_model() -> NIQEModel:
    return NIQEModel.fit([textured(seed, 192, 192) for seed in range(3)], patch_size=32)


def test_images_smaller_than_two_patches_are_refused_by_name(small_model):
    with pytest.raises(NIQEInputError, match=r"40x33 px; NIQE with patch_size 32 needs at least 2 whole 32x32"):
        small_model.score(textured(0, 33, 40))
    assert small_model.score(textured(0, 33, 64)) >= 0.0   # exactly 2 patches is enough


def test_a_flat_image_cannot_be_scored_and_says_why(small_model):
    with pytest.raises(NIQEInputError, match="only 0 of 4 patches have texture"):
        small_model.score(np.full((64, 64, 3), 90, np.uint8))


def test_settings_are_checked():
    with pytest.raises(ValueError, match="even"):
        NIQESettings(patch_size=95)
    with pytest.raises(ValueError, match="sharpness_threshold"):
        NIQESettings(sharpness_threshold=1.5)


def test_fit_skips_unusable_images_with_a_warning_and_records_them(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    images = [textured(0, 128, 128), str(broken), textured(1, 20, 20), textured(2, 128, 128)]
    with pytest.warns(UserWarning, match="skipping"):
        model = NIQEModel.fit(images, patch_size=32)
    assert model.fit_info["n_images"] == 2
    assert [item["source"] for item in model.fit_info["skipped"]] == [str(broken), "array of shape (20, 20, 3) (uint8)"]
    assert model.fit_info["n_patches"] == 32
    assert model.fit_info["n_patches_selected"] == sum(item["selected"] for item in model.fit_info["images"])


def test_fit_with_nothing_usable_fails_clearly():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match="need at least 2 sharp patches"):
            NIQEModel.fit([textured(0, 10, 10)], patch_size=32)


def test_score_many_keeps_going_past_bad_files(small_model, tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(textured(4, 96, 96)).save(good)
    result = small_model.score_many([good, tmp_path / "missing.png", np.full((64, 64, 3), 7, np.uint8)])
    assert np.isfinite(result.scores[0]) and np.isnan(result.scores[1:]).all()
    assert result.errors[0] is None
    assert "file not found" in result.errors[1] and "have texture" in result.errors[2]
    assert result.n_failed == 2
    assert result.scores[0] == small_model.score(str(good))


# -- files ---------------------------------------------------------------------------------------------
def test_save_and_load_round_trip_exactly(small_model, tmp_path):
    path = small_model.save(tmp_path / "sub" / "niqe.json")
    loaded = NIQEModel.load(path)
    np.testing.assert_array_equal(loaded.mean, small_model.mean)
    np.testing.assert_array_equal(loaded.covariance, small_model.covariance)
    assert loaded.settings == small_model.settings and loaded.settings.patch_size == 32
    assert loaded.fit_info == small_model.fit_info
    image = textured(9, 100, 100)
    assert loaded.score(image) == small_model.score(image)
    saved = json.loads(path.read_text())
    assert saved["format"] == "perceptiq-niqe" and saved["fit"]["n_images"] == 3


def test_load_rejects_bad_files_by_name(small_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        NIQEModel.load(tmp_path / "nope.json")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ValueError, match="garbage.json: not a readable"):
        NIQEModel.load(garbage)
    data = small_model.to_dict()
    data["mean"] = data["mean"][:10]
    short = tmp_path / "short.json"
    short.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"short.json: invalid NIQE parameters .*shape \(36,\)"):
        NIQEModel.load(short)
    data = small_model.to_dict()
    data["version"] = 99
    future = tmp_path / "future.json"
    future.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="version 99"):
        NIQEModel.load(future)


# -- behaviour on real photographs ---------------------------------------------------------------------
def test_niqe_scores_distorted_held_out_photos_worse_than_the_pristine_ones():
    """Fitted on 8 scikit-image photos, scored on 5 others it never saw: blur (σ 3.5 px), white noise
    (σ 0.07) and JPEG (quality 5) versions each score higher (worse) than their pristine photo."""
    model = NIQEModel.fit([sample_photo(name) for name in FIT_PHOTOS])
    assert model.fit_info["n_images"] == len(FIT_PHOTOS)
    for name in HELD_OUT_PHOTOS:
        pristine = sample_photo(name)
        clean = model.score(pristine)
        for distortion, level in [("gaussian_blur", 4), ("white_noise", 3), ("jpeg", 4)]:
            distorted = model.score(distort(pristine, distortion, level))
            assert distorted > clean, f"{name}: {distortion} level {level} scored {distorted:.2f}, pristine {clean:.2f}"
