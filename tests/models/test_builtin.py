"""The built-in model perceptiq-tiny: shipped weights load offline with no flags, are small and intact,
rank the example images, expose the backbone, and the recipe that makes them runs end to end."""
import json
import socket
from pathlib import Path

import pytest
import torch

import perceptiq
from perceptiq.backbones import create_backbone, sha256_of
from perceptiq.models import build_model, get_model_spec
from perceptiq.models.builtin import (
    BuiltinWeightsError,
    builtin_backbone_weights,
    builtin_checkpoint_path,
    builtin_config,
    builtin_tensors,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "images"
MAX_SHIPPED_BYTES = 25 * 1000 * 1000   # issue 11: at most 25 MB in the package
HELD_OUT = Path(__file__).resolve().parents[1] / "fixtures" / "heldout_photos"


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test: the built-in model must never reach for the network."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def shipped_model():
    """The built-in model by name (built once: the tests below only read it)."""
    return build_model("perceptiq-tiny").module


@pytest.fixture(scope="module")
def example_pixels():
    from perceptiq.training.transforms import ImageTransform
    from perceptiq.backbones import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    transform = ImageTransform(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, resize=224, crop=224, train=False)
    names = ["coffee", "coffee_blur", "coffee_noise", "coffee_jpeg_q5"]
    return names, torch.stack([transform(EXAMPLES / f"{name}.jpg") for name in names])


def test_loads_by_name_offline_with_no_flags(no_network, example_pixels):
    bundle = build_model("perceptiq-tiny")
    assert bundle.backbone.arch == "perceptiq-tiny" and bundle.task == "quality"
    _, pixels = example_pixels
    with torch.no_grad():
        scores = bundle.module(pixels).scores
    assert scores.shape == (4,) and bool(((scores > 0) & (scores < 1)).all())
    # the public entry point builds the same model and gives the same scores
    assessor = perceptiq.load_model("perceptiq-tiny", device="cpu", precision="fp32")
    torch.testing.assert_close(torch.as_tensor(assessor.score(pixels).scores, dtype=torch.float32), scores)
    from_file = assessor.score([str(EXAMPLES / "coffee.jpg")])
    assert len(from_file) == 1 and from_file.paths == [str(EXAMPLES / "coffee.jpg")] and 0 < from_file[0].score < 1


def test_shipped_file_is_small_and_matches_its_recorded_sha256(shipped_model):
    path = builtin_checkpoint_path()
    assert path.stat().st_size <= MAX_SHIPPED_BYTES
    config = json.loads(path.with_suffix(".json").read_text())
    assert config["sha256"] == sha256_of(path)
    assert config["format"] == "perceptiq-checkpoint/1" and config["backbone"] == "perceptiq-tiny"
    # the weights were trained with the stem the package builds for the architecture (configs/stems.json)
    from perceptiq.backbones.stems import stem_settings

    assert config["stem"] == stem_settings()["perceptiq-tiny"]
    # every tensor the model has is in the file (nothing is left to the random initialisation)
    assert set(builtin_tensors()) == set(shipped_model.state_dict())


def test_pristine_example_ranks_above_its_distorted_copies():
    """README's first command: coffee.jpg above its blurred, noisy and JPEG q5 copies (default view)."""
    names = ["coffee", "coffee_blur", "coffee_noise", "coffee_jpeg_q5"]
    model = perceptiq.load_model("perceptiq-tiny", device="cpu", precision="fp32")
    scores = dict(zip(names, model.score([str(EXAMPLES / f"{n}.jpg") for n in names]).scores.tolist()))
    assert all(scores["coffee"] > scores[n] for n in names[1:]), scores


def _distorted_copies(photo: Path, folder: Path) -> list[Path]:
    """Gaussian blur sigma 3, white noise sigma 30 (of 255), JPEG quality 5 — the copies issue 11 names."""
    import numpy as np
    from PIL import Image, ImageFilter

    image = Image.open(photo).convert("RGB")
    rng = np.random.default_rng(0)
    noisy = np.clip(np.asarray(image, dtype=np.float64) + rng.normal(0, 30, (image.height, image.width, 3)), 0, 255)
    copies = {"blur": image.filter(ImageFilter.GaussianBlur(3)), "noise": Image.fromarray(noisy.astype(np.uint8))}
    paths = []
    for name, picture in copies.items():
        paths.append(folder / f"{photo.stem}_{name}.png")
        picture.save(paths[-1])
    paths.append(folder / f"{photo.stem}_jpeg5.jpg")
    image.save(paths[-1], quality=5)
    return paths


def test_held_out_photographs_rank_above_their_blurred_noisy_and_jpeg_copies(tmp_path):
    """Photographs from another source than the training ones (Unsplash, tests/fixtures/heldout_photos):
    each pristine photo must score strictly above its blurred, its noisy and its JPEG quality-5 copy
    (issue 11's test: no tolerance, the model must actually do it).
    """
    photos = sorted(HELD_OUT.glob("*.png"))
    assert len(photos) >= 5, f"held-out fixtures missing in {HELD_OUT}"
    model = perceptiq.load_model("perceptiq-tiny", device="cpu", precision="fp32")
    losses = []
    for photo in photos:
        copies = _distorted_copies(photo, tmp_path)
        scores = model.score([str(photo)] + [str(p) for p in copies]).scores
        losses += [f"{c.name}: {s:.4f} >= {scores[0]:.4f}" for c, s in zip(copies, scores[1:])
                   if not s < scores[0]]
    assert not losses, losses


def test_shipped_checkpoint_path_gives_the_same_model_as_the_name(shipped_model, example_pixels):
    _, pixels = example_pixels
    with torch.no_grad():
        by_name = shipped_model(pixels).scores
        by_path = build_model(str(builtin_checkpoint_path())).module(pixels).scores
    torch.testing.assert_close(by_name, by_path)


def test_backbone_weights_file_loads_into_create_backbone(tmp_path, shipped_model, example_pixels):
    path = builtin_backbone_weights(cache_dir=tmp_path)
    assert path.parent == tmp_path and builtin_config()["sha256"][:12] in path.name
    backbone = create_backbone("perceptiq-tiny", weights=str(path))
    _, pixels = example_pixels
    with torch.no_grad():
        torch.testing.assert_close(backbone.encode_image(pixels), shipped_model.backbone.encode_image(pixels))
    assert builtin_backbone_weights(cache_dir=tmp_path) == path   # extracted once, then reused


def test_other_backbone_weights_are_refused_not_discarded(tmp_path):
    from safetensors.torch import save_file

    other = create_backbone("perceptiq-tiny", "random", seed=3)
    file = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.clip.state_dict().items()}, str(file))
    with pytest.raises(BuiltinWeightsError, match="ships its own CLIP weights"):
        build_model("perceptiq-tiny", weights=str(file))


def test_registered_metadata():
    spec = get_model_spec("perceptiq-tiny")
    assert spec.default_backbone == "perceptiq-tiny" and spec.higher_is_better and spec.tasks == ("quality",)


def test_reproduction_recipe_runs_end_to_end(tmp_path):
    pytest.importorskip("skimage")
    from perceptiq.recipes import load_recipe
    from perceptiq.training.builtin import build_builtin_model

    recipe = load_recipe("perceptiq-tiny-v1")
    recipe["protocol"]["sources"] = {"train": ["text"], "heldout": ["clock"]}
    recipe["protocol"]["synthesize"].update(types=["jpeg", "gaussian_blur", "white_noise"], levels=[1, 5],
                                            max_side=64)
    recipe["protocol"]["stages"][0]["train"].update(epochs=1)
    result = build_builtin_model(tmp_path / "out", recipe=recipe, work_dir=tmp_path / "work",
                                 train_overrides={"max_steps_per_epoch": 1, "batch_size": 2})
    assert result.n_train_images == 6 and result.n_heldout_images == 6
    assert set(result.heldout_by_group) == {"blur", "compression", "noise"}
    config = json.loads(result.checkpoint.with_suffix(".json").read_text())
    assert config["sha256"] == sha256_of(result.checkpoint) and config["sources"]["heldout"] == ["clock"]
    # the DCT patch embedding was frozen, the rest of the vision tower trained
    rebuilt = build_model(str(result.checkpoint)).module
    start = create_backbone("perceptiq-tiny-v1", "random").clip.visual
    from perceptiq.training.builtin.dct_init import dct_filter_bank

    patch = recipe["model"]["patch_init"]
    bank = dct_filter_bank(32, luma_frequencies=patch["luma_frequencies"],
                           chroma_frequencies=patch["chroma_frequencies"], gain=patch["gain"])
    conv = rebuilt.backbone.clip.visual.conv1.weight
    torch.testing.assert_close(conv[: len(bank)], bank.half().float())
    assert not torch.equal(rebuilt.backbone.clip.visual.proj, start.proj.half().float())


def test_sources_must_not_overlap(tmp_path):
    pytest.importorskip("skimage")
    from perceptiq.recipes import load_recipe
    from perceptiq.training.builtin import prepare_data

    recipe = load_recipe("perceptiq-tiny-v1")
    recipe["protocol"]["sources"] = {"train": ["text", "clock"], "heldout": ["clock"]}
    with pytest.raises(ValueError, match=r"\['clock'\] are both in train and heldout"):
        prepare_data(recipe, tmp_path)


def test_text_context_follows_the_loaded_token_table_not_the_random_one(shipped_model, example_pixels):
    from perceptiq.models.builtin import build_builtin

    # a backbone whose random draw differs (as another torch version's might): same scores after loading
    other_draw = build_builtin(create_backbone("perceptiq-tiny", "random", seed=7))
    context = other_draw.text_context
    table = other_draw.backbone.token_embeddings(context.tokens)
    embedded = context.embeddings()
    torch.testing.assert_close(embedded[:, 1 + context.n_ctx:], table[:, 1 + context.n_ctx:])
    torch.testing.assert_close(embedded[:, :1], table[:, :1])
    _, pixels = example_pixels
    with torch.no_grad():
        torch.testing.assert_close(other_draw(pixels).scores, shipped_model(pixels).scores)


def test_reports_name_the_weights_a_model_carries(tmp_path, shipped_model):
    """Issue 14 item 9: perceptiq-tiny is listed with its shipped weights, and a checkpoint reports the
    tensors it carries, not the random starting point it names."""
    from perceptiq.models import save_checkpoint

    assert get_model_spec("perceptiq-tiny").default_weights == "shipped"
    assert build_model("perceptiq-tiny").backbone.weights.startswith("shipped (perceptiq-tiny.safetensors")
    assert build_model(str(builtin_checkpoint_path())).backbone.weights == "perceptiq-tiny.safetensors (every tensor)"
    grmp = build_model("grmp-iqa", backbone="test-tiny", weights="random")
    trained = grmp.module.trainable_state_dict()
    save_checkpoint(tmp_path / "model.safetensors", trained, {**grmp.config, "trained_parameters": sorted(trained)})
    loaded = build_model(str(tmp_path / "model.safetensors"))
    assert loaded.backbone.weights == f"model.safetensors ({len(trained)} trained tensors over random)"
    with pytest.raises(ValueError, match="ships no weights"):
        build_model("grmp-iqa", backbone="test-tiny", weights="shipped")


def test_ranked_recipe_builds_a_loadable_checkpoint_from_photographs(tmp_path):
    """The shipped recipe's path end to end, smoke-sized: crop bank -> Trainer (bce+rank) -> checkpoint."""
    from perceptiq.recipes import load_recipe
    from perceptiq.training.builtin.ranked import build_ranked_model

    photos = tmp_path / "photos" / "train"
    photos.mkdir(parents=True)
    for name in ("astronaut", "chelsea"):
        (photos / f"{name}.jpg").write_bytes((EXAMPLES / f"{name}.jpg").read_bytes())
    recipe = load_recipe("perceptiq-tiny")
    recipe["protocol"]["bank"].update(rounds=1, crops_per_round=1, long_side=[300, 300])
    recipe["protocol"]["groups_per_step"] = 2
    recipe["train"].update(epochs=2, precision="fp32")
    recipe["model"]["stem"] = {"front_end": {"rgb_pool": 2}}     # a stem variant is a recipe setting
    result = build_ranked_model(recipe, tmp_path / "out", photos=tmp_path / "photos", work_dir=tmp_path / "work",
                                train_overrides={"steps_per_epoch": 1}, device="cpu")
    assert result.n_photos == 2 and result.n_groups == 2
    config = json.loads(result.checkpoint.with_suffix(".json").read_text())
    assert config["sha256"] == sha256_of(result.checkpoint) and config["photos"] == ["astronaut.jpg", "chelsea.jpg"]
    assert config["backbone"] == "perceptiq-tiny" and config["default_view"] == "crops:4"
    assert sorted(p.name for p in (tmp_path / "work" / "train" / "snapshots").iterdir()) == [
        "epoch-001.safetensors", "epoch-002.safetensors"]
    rebuilt = build_model(str(result.checkpoint)).module
    start = create_backbone("perceptiq-tiny", "random").clip
    # the front end's settings are recorded, and rebuilt on loading
    # (test_a_checkpoint_rebuilds_the_stem_it_was_built_with)
    from perceptiq.backbones.stems import stem_settings

    shipped_stem = stem_settings()["perceptiq-tiny"]
    assert config["stem"] == {**shipped_stem, "front_end": {**shipped_stem["front_end"], "rgb_pool": 2}}
    assert rebuilt.backbone.clip.visual.conv1.front_end.rgb_pool == 2
    # the stem and the transformer trained, the token table stayed as it was drawn
    assert not torch.equal(rebuilt.backbone.clip.visual.conv1.project.weight, start.visual.conv1.project.weight.half().float())
    torch.testing.assert_close(rebuilt.backbone.clip.token_embedding.weight, start.token_embedding.weight.half().float())


def test_build_tiny_asks_for_photographs(tmp_path):
    from typer.testing import CliRunner

    from perceptiq.cli.main import app

    result = CliRunner().invoke(app, ["build-tiny", "-o", str(tmp_path / "out")])
    assert result.exit_code != 0 and "--photos" in result.output


def test_ranked_build_refuses_a_misspelt_protocol_key_before_any_work(tmp_path):
    from perceptiq.recipes import load_recipe
    from perceptiq.training.builtin.ranked import build_ranked_model

    with pytest.raises(ValueError, match="unknown key 'groups_per_stpe'. Did you mean 'groups_per_step'"):
        load_recipe("perceptiq-tiny", ["protocol.groups_per_stpe=8"])
    recipe = load_recipe("perceptiq-tiny")
    recipe["protocol"]["groups_per_stpe"] = 8      # a recipe dict made without load_recipe is checked too
    with pytest.raises(ValueError, match="unknown key 'groups_per_stpe'. Did you mean 'groups_per_step'"):
        build_ranked_model(recipe, tmp_path / "out", photos=tmp_path / "none", work_dir=tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_models_listing_says_what_the_builtin_model_knows_and_does_not():
    from typer.testing import CliRunner

    from perceptiq.cli.main import app

    out = CliRunner().invoke(app, ["models"]).output
    block = out[out.index("perceptiq-tiny\n"):out.index("perceptiq-tiny-v1\n")]
    assert "knows: technical quality" in block and "does not know: human taste" in block
    assert "default view: crops:4" in block
    spec = get_model_spec("perceptiq-tiny")
    assert spec.knows and spec.does_not_know


def test_ranked_build_resumes_after_a_stop_and_ends_where_an_unbroken_build_ends(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from perceptiq.recipes import load_recipe
    from perceptiq.training.builtin.ranked import build_ranked_model
    from perceptiq.training.resume import ResumeMismatchError
    from perceptiq.training.trainer import Trainer

    photos = tmp_path / "photos" / "train"
    photos.mkdir(parents=True)
    for name in ("astronaut", "chelsea"):
        (photos / f"{name}.jpg").write_bytes((EXAMPLES / f"{name}.jpg").read_bytes())
    recipe = load_recipe("perceptiq-tiny")
    recipe["protocol"]["bank"].update(rounds=1, crops_per_round=1, long_side=[300, 300])
    recipe["protocol"]["groups_per_step"] = 2
    recipe["train"].update(epochs=2, precision="fp32")
    kwargs = dict(photos=tmp_path / "photos", train_overrides={"steps_per_epoch": 2}, device="cpu")
    straight = build_ranked_model(recipe, tmp_path / "a", work_dir=tmp_path / "wa", **kwargs)

    original = Trainer._log_epoch

    def stop_after_first_epoch(self, record):
        original(self, record)
        if record.epoch == 1:
            raise KeyboardInterrupt("stopped")

    monkeypatch.setattr(Trainer, "_log_epoch", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        build_ranked_model(recipe, tmp_path / "b", work_dir=tmp_path / "wb", **kwargs)
    monkeypatch.setattr(Trainer, "_log_epoch", original)
    resumed = build_ranked_model(recipe, tmp_path / "b", work_dir=tmp_path / "wb", resume=True, **kwargs)
    a, b = load_file(str(straight.checkpoint)), load_file(str(resumed.checkpoint))
    assert a.keys() == b.keys()
    for key in a:      # fp32, same operations in the same order: the same numbers
        assert torch.equal(a[key], b[key]), key
    other = {**recipe, "train": {**recipe["train"], "lr": 1e-3}}
    with pytest.raises(ResumeMismatchError, match="train.lr"):
        build_ranked_model(other, tmp_path / "b", work_dir=tmp_path / "wb", resume=True, **kwargs)


def test_a_checkpoint_rebuilds_the_stem_it_was_built_with(tmp_path):
    """The front end's settings are not tensors: a model built with a recipe's ``model.stem`` records
    them in its config, and its checkpoint rebuilds that front end (same scores), not stems.json's."""
    from perceptiq.models import save_checkpoint

    from perceptiq.backbones.stems import stem_settings

    # a front end unlike stems.json's in one setting, so only the recorded settings can rebuild it
    other_pool = 2 if stem_settings()["perceptiq-tiny"]["front_end"].get("rgb_pool", 1) != 2 else 8
    bundle = build_model("grmp-iqa", backbone="perceptiq-tiny", weights="random", n_visual_tokens=0,
                         stem={"front_end": {"rgb_pool": other_pool}})
    assert bundle.config["stem"]["front_end"]["rgb_pool"] == other_pool
    module = bundle.module.eval()
    path = save_checkpoint(tmp_path / "pooled.safetensors", module.state_dict(), bundle.config)
    rebuilt = build_model(str(path)).module.eval()
    assert rebuilt.backbone.clip.visual.conv1.front_end.rgb_pool == other_pool
    pixels = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        # same tensors, same front end, same float32 operations: equal scores
        torch.testing.assert_close(rebuilt(pixels), module(pixels), rtol=0, atol=0)
    with pytest.raises(ValueError, match="built with the stem it recorded"):
        build_model(str(path), stem={"front_end": {"rgb_pool": 1}})
    # the shipped weights were trained with stems.json's stem; another one is refused, not misread
    with pytest.raises(ValueError, match="was trained with the stem settings"):
        build_model("perceptiq-tiny", stem={"front_end": {"rgb_pool": other_pool}})
