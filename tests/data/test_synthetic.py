"""Tests of perceptiq.data.synthetic: the 25 KADID-style distortions, the colour-SSIM
label, the dataset generator and the per-distortion task grouping."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from perceptiq.data.synthetic import (
    CSV_HEADER,
    ReferenceSSIM,
    distortion_tasks,
    get_distortion,
    list_distortions,
    pseudo_mos,
    synthesize,
)
from perceptiq.data.synthetic.colour import lab_to_rgb, rgb_to_lab

KADID_ORDER = (
    "gaussian_blur", "lens_blur", "motion_blur",
    "color_diffusion", "color_shift", "color_quantization", "color_saturation_down", "color_saturation_up",
    "jpeg2000", "jpeg",
    "white_noise", "white_noise_color_component", "impulse_noise", "multiplicative_noise", "denoise",
    "brighten", "darken", "mean_shift",
    "jitter", "non_eccentricity_patch", "pixelate", "quantization", "color_block",
    "high_sharpen", "contrast_change",
)  # fmt: skip
ALL_NAMES = [d.name for d in list_distortions()]
# Types whose output depends on the random generator (the rest are deterministic filters).
RANDOM_TYPES = (
    "motion_blur", "color_shift", "white_noise", "white_noise_color_component", "impulse_noise",
    "multiplicative_noise", "denoise", "jitter", "non_eccentricity_patch", "color_block",
)  # fmt: skip


def textured_image(size: int = 64, seed: int = 0) -> np.ndarray:
    """A colourful, photo-like (size, size, 3) float32 image: gradients, a sinusoid,
    a disc and a rectangle with hard edges, and smoothed noise texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.2 + 0.6 * xx, 0.2 + 0.6 * yy, 0.5 + 0.3 * np.sin(6 * xx + 4 * yy)], axis=-1)
    img[(yy - 0.35) ** 2 + (xx - 0.6) ** 2 < 0.04] = [0.9, 0.2, 0.15]
    img[int(0.6 * size) : int(0.85 * size), int(0.1 * size) : int(0.45 * size)] = [0.1, 0.3, 0.8]
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), 1.0)
    img = img + 0.08 * texture[..., None] / texture.std()
    return np.clip(img, 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return textured_image()


# --- catalogue ---------------------------------------------------------------------------


def test_catalogue_lists_the_25_kadid_types_in_kadid_order():
    distortions = list_distortions()
    assert tuple(d.name for d in distortions) == KADID_ORDER
    assert [d.kadid_id for d in distortions] == list(range(1, 26))
    groups = [d.group for d in distortions]
    assert {g: groups.count(g) for g in dict.fromkeys(groups)} == {
        "blur": 3, "color": 5, "compression": 2, "noise": 5, "brightness": 3, "spatial": 5, "sharpness_contrast": 2,
    }  # fmt: skip
    for d in distortions:
        assert d.description and d.parameter and d.levels == (1, 2, 3, 4, 5)
        assert d.as_dict()["strengths"] == list(d.strengths)


def test_docs_table_matches_the_catalogue():
    """docs/synthetic.md lists every type with the strengths the code uses."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "synthetic.md").read_text(encoding="utf-8")
    for d in list_distortions():
        levels = " / ".join(f"{s:g}" for s in d.strengths)
        assert f"| {d.kadid_id} | `{d.name}` | {d.kadid_name} | {d.group} |" in docs, d.name
        assert f"| {d.parameter} | {levels} |" in docs, d.name


def test_unknown_type_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown distortion type 'fog'.*gaussian_blur"):
        get_distortion("fog")


# --- each distortion ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_NAMES)
def test_distortion_returns_a_changed_image_of_same_shape_dtype_and_range(name, image):
    before = image.copy()
    out = get_distortion(name)(image, 3, np.random.default_rng(0))
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - image).mean() > 1e-3, "level 3 must visibly change the image"
    np.testing.assert_array_equal(image, before)  # pure: the input is not modified


@pytest.mark.parametrize("name", ALL_NAMES)
def test_distortion_is_deterministic_for_a_fixed_seed(name, image):
    distortion = get_distortion(name)
    first = distortion(image, 4, np.random.default_rng(123))
    second = distortion(image, 4, np.random.default_rng(123))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", RANDOM_TYPES)
def test_random_distortions_depend_on_the_seed(name, image):
    distortion = get_distortion(name)
    one, two = distortion(image, 4, np.random.default_rng(1)), distortion(image, 4, np.random.default_rng(2))
    assert not np.array_equal(one, two)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_severity_increases_strictly_with_level(name, image):
    """Both MSE and the label (1 - colour SSIM) rise at every step 1 -> 5 (same seed per level)."""
    distortion = get_distortion(name)
    outputs = [distortion(image, level, np.random.default_rng(7)) for level in distortion.levels]
    mse = [float(np.mean((out - image) ** 2)) for out in outputs]
    labels = [pseudo_mos(image, out) for out in outputs]
    assert all(np.diff(mse) > 0), f"{name}: MSE per level {mse}"
    assert all(np.diff(labels) < 0), f"{name}: label per level {labels}"


@pytest.mark.parametrize("level", [0, 6, 2.5, True, "3"])
def test_level_outside_1_to_5_is_rejected(level, image):
    with pytest.raises(ValueError, match=r"distortion 'jpeg': level must be an integer in 1\.\.5"):
        get_distortion("jpeg")(image, level, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((8, 8), np.float32), r"expected an \(H, W, 3\) array"),
        (np.zeros((8, 8, 3), np.uint8), "expected float32"),
        (np.full((8, 8, 3), 1.5, np.float32), r"pixel values must lie in \[0, 1\]"),
    ],
)
def test_bad_input_image_is_rejected_with_the_type_name(bad, message):
    with pytest.raises(ValueError, match=f"white_noise: {message}"):
        get_distortion("white_noise")(bad, 1, np.random.default_rng(0))


def test_exact_parameters_of_simple_types(image):
    rng = np.random.default_rng(0)
    darkened = get_distortion("darken")(image, 2, rng)
    np.testing.assert_allclose(darkened, image**1.45, rtol=1e-5, atol=1e-6)
    quantised = get_distortion("quantization")(image, 5, rng)  # 3 steps: {0, 0.5, 1}
    assert set(np.unique(quantised)) <= {0.0, 0.5, 1.0}
    pixelated = get_distortion("pixelate")(image, 2, rng)  # 3 x 3 tiles of one colour
    tile_mean = image[:3, :3].mean(axis=(0, 1))
    np.testing.assert_allclose(pixelated[:3, :3], np.broadcast_to(tile_mean, (3, 3, 3)), atol=1e-6)
    grey = get_distortion("color_saturation_down")(image, 5, rng)  # no chroma left
    np.testing.assert_allclose(rgb_to_lab(grey)[..., 1:], 0.0, atol=0.5)


def test_lab_round_trip_is_exact_inside_the_gamut(image):
    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(image)), image, atol=1e-5)


# --- label -------------------------------------------------------------------------------


def test_label_is_one_for_an_identical_image(image):
    assert pseudo_mos(image, image.copy()) == pytest.approx(1.0, abs=1e-9)


def test_label_on_flat_images_matches_the_ssim_luminance_term():
    """Flat planes have zero variance, so SSIM reduces to (2ab + C1) / (a^2 + b^2 + C1)."""
    light, dark = np.full((20, 20, 3), 0.5, np.float32), np.full((20, 20, 3), 0.3, np.float32)
    c1 = 0.01**2
    expected_y = (2 * 0.5 * 0.3 + c1) / (0.5**2 + 0.3**2 + c1)
    np.testing.assert_allclose(ReferenceSSIM(light).ssim_per_plane(dark), [expected_y, 1.0, 1.0], rtol=1e-6)
    assert pseudo_mos(light, dark) == pytest.approx(0.8 * expected_y + 0.2, rel=1e-6)


def test_luma_ssim_matches_an_explicit_11x11_window_computation(image):
    """Independent SSIM of the Y plane with an explicit normalised Gaussian kernel."""
    distorted = get_distortion("white_noise")(image, 3, np.random.default_rng(0))
    to_y = np.array([0.299, 0.587, 0.114])
    x, y = image.astype(np.float64) @ to_y, distorted.astype(np.float64) @ to_y
    offsets = np.arange(-5, 6)
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 1.5**2))
    kernel /= kernel.sum()

    def window(plane):
        return ndimage.correlate(plane, kernel, mode="reflect")

    mx, my = window(x), window(y)
    vx, vy, cxy = window(x * x) - mx**2, window(y * y) - my**2, window(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    expected = np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    assert ReferenceSSIM(image).ssim_per_plane(distorted)[0] == pytest.approx(expected, rel=1e-4)


# --- synthesize --------------------------------------------------------------------------


@pytest.fixture()
def source_dir(tmp_path: Path) -> Path:
    """Two good images (one in a sub-folder) and one corrupt file."""
    src = tmp_path / "pristine"
    (src / "sub").mkdir(parents=True)
    Image.fromarray((textured_image(64, seed=1) * 255).round().astype(np.uint8)).save(src / "a.png")
    Image.fromarray((textured_image(64, seed=2) * 255).round().astype(np.uint8)).save(src / "sub" / "b.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    (src / "notes.txt").write_text("not an image, ignored")
    return src


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CSV_HEADER
        return list(reader)


def test_synthesize_writes_every_row_and_records_the_bad_file(source_dir, tmp_path):
    out = tmp_path / "synthetic"
    with pytest.warns(UserWarning, match="broken.jpg"):
        csv_path = synthesize(source_dir, out, seed=3)
    assert csv_path == out / "labels.csv"
    rows = read_rows(csv_path)
    assert len(rows) == 2 * 25 * 5
    assert {r["ref"] for r in rows} == {"reference/a.png", "reference/sub__b.png"}
    assert {r["distortion"] for r in rows} == set(KADID_ORDER)
    assert {r["level"] for r in rows} == {"1", "2", "3", "4", "5"} and {r["scene"] for r in rows} == {"natural"}
    for row in rows:
        assert (out / row["path"]).is_file() and 0.0 <= float(row["score"]) <= 1.0
    # the reference copy is the source, pixel for pixel (64 px < max_side, PNG)
    reference_copy = np.asarray(Image.open(out / "reference/a.png"))
    np.testing.assert_array_equal(reference_copy, np.asarray(Image.open(source_dir / "a.png")))
    # within each (reference, type) the label never rises with the level, and falls overall
    for ref in ("reference/a.png", "reference/sub__b.png"):
        for name in KADID_ORDER:
            scores = [float(r["score"]) for r in rows if r["ref"] == ref and r["distortion"] == name]
            assert all(np.diff(scores) <= 0) and scores[-1] < scores[0] < 1.0, (ref, name, scores)

    # a label does not depend on which levels were requested (levels 1..3 are computed, not written)
    with pytest.warns(UserWarning):
        alone = read_rows(synthesize(source_dir, tmp_path / "alone", seed=3, types=["color_shift"], levels=[4]))
    assert [r["path"] for r in alone] == ["distorted/a/color_shift_4.png", "distorted/sub__b/color_shift_4.png"]
    full = {r["path"]: r["score"] for r in rows}
    assert [r["score"] for r in alone] == [full[r["path"]] for r in alone]
    assert not (tmp_path / "alone" / "distorted/a/color_shift_3.png").exists()

    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["path"] for s in manifest["skipped"]] == ["broken.jpg"]
    assert "broken.jpg" in manifest["skipped"][0]["reason"]
    assert manifest["seed"] == 3 and manifest["levels"] == [1, 2, 3, 4, 5]
    assert [t["name"] for t in manifest["types"]] == list(KADID_ORDER)
    assert manifest["n_references"] == 2 and manifest["n_rows"] == 250
    assert manifest["label"]["name"] == "colour-SSIM pseudo-MOS" and manifest["generator_version"]


def test_synthesize_is_deterministic_and_seed_dependent(source_dir, tmp_path):
    kwargs = {"types": ["white_noise", "jitter"], "levels": (1, 5)}
    with pytest.warns(UserWarning):
        first = synthesize(source_dir, tmp_path / "one", seed=5, **kwargs)
        second = synthesize(source_dir, tmp_path / "two", seed=5, **kwargs)
        third = synthesize(source_dir, tmp_path / "three", seed=6, **kwargs)
    assert first.read_text() == second.read_text()
    rows = read_rows(first)
    assert len(rows) == 2 * 2 * 2
    noisy = "distorted/a/white_noise_5.png"
    assert (tmp_path / "one" / noisy).read_bytes() == (tmp_path / "two" / noisy).read_bytes()
    assert (tmp_path / "one" / noisy).read_bytes() != (tmp_path / "three" / noisy).read_bytes()


def test_synthesize_jpg_output_labels_the_stored_file(source_dir, tmp_path):
    out = tmp_path / "jpg"
    with pytest.warns(UserWarning):
        rows = read_rows(synthesize(source_dir, out, types=["gaussian_blur"], levels=[2], image_format="jpg"))
    row = next(r for r in rows if r["ref"] == "reference/a.png")
    assert row["path"] == "distorted/a/gaussian_blur_2.jpg"

    def load(rel):
        return np.asarray(Image.open(out / rel).convert("RGB"), dtype=np.float32) / 255

    assert float(row["score"]) == pytest.approx(pseudo_mos(load(row["ref"]), load(row["path"])), abs=1e-6)


def test_synthesize_shrinks_to_max_side(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray((textured_image(100)[:60] * 255).astype(np.uint8)).save(src / "wide.png")
    calls = []
    csv_path = synthesize(
        src, tmp_path / "out", types=["jpeg"], levels=[1], max_side=50, progress=lambda *done_total: calls.append(done_total)
    )
    rows = read_rows(csv_path)
    assert calls == [(1, 1)]
    assert Image.open(tmp_path / "out" / rows[0]["path"]).size == (50, 30)
    assert Image.open(tmp_path / "out" / rows[0]["ref"]).size == (50, 30)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"types": ["fog"]}, ValueError, "unknown distortion type 'fog'"),
        ({"types": "jpeg"}, TypeError, "sequence of names"),
        ({"levels": (0, 1)}, ValueError, r"levels must be .* integers in 1\.\.5"),
        ({"image_format": "gif"}, ValueError, "image_format must be one of"),
        ({"seed": -1}, ValueError, "seed must be a non-negative integer"),
        ({"max_side": 4}, ValueError, "max_side must be None or an integer >= 16"),
    ],
)
def test_synthesize_rejects_bad_arguments(source_dir, tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        synthesize(source_dir, tmp_path / "out", **kwargs)


def test_synthesize_refuses_to_overwrite_and_needs_a_source_folder(source_dir, tmp_path):
    with pytest.raises(NotADirectoryError, match="missing"):
        synthesize(tmp_path / "missing", tmp_path / "out")
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels.csv").write_text("old")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        synthesize(source_dir, out, types=["jpeg"], levels=[1])
    with pytest.warns(UserWarning):
        synthesize(source_dir, out, types=["jpeg"], levels=[1], overwrite=True)
    assert len(read_rows(out / "labels.csv")) == 2


def test_synthesize_on_a_folder_without_images_warns_and_writes_an_empty_csv(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "readme.txt").write_text("no images here")
    with pytest.warns(UserWarning, match="no image files"):
        csv_path = synthesize(tmp_path / "src", tmp_path / "out")
    assert read_rows(csv_path) == []
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["n_references"] == 0


# --- tasks -------------------------------------------------------------------------------


def test_distortion_tasks_groups_samples_by_type_in_order(source_dir, tmp_path):
    with pytest.warns(UserWarning):
        csv_path = synthesize(source_dir, tmp_path / "out", types=["jpeg", "darken", "pixelate"], levels=(1, 3, 5))
    samples = [SimpleNamespace(**row) for row in read_rows(csv_path)]
    tasks = distortion_tasks(samples)
    assert list(tasks) == ["jpeg", "darken", "pixelate"]
    for name, members in tasks.items():
        assert len(members) == 2 * 3 and all(s.distortion == name for s in members)
    assert sum(len(m) for m in tasks.values()) == len(samples)


def test_distortion_tasks_rejects_a_sample_without_a_type():
    samples = [SimpleNamespace(path="x.png", distortion="jpeg"), SimpleNamespace(path="y.png", distortion=None)]
    with pytest.raises(ValueError, match=r"sample 1 \('y.png'\) has no distortion type"):
        distortion_tasks(samples)
