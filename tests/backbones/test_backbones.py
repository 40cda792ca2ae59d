"""Backbones: architecture by name, weight sources kept apart, safe loading, fast offline failure."""
from __future__ import annotations

import hashlib
import json
import time

import pytest
import torch
from safetensors.torch import save_file

from perceptiq.backbones import (
    TINY_ARCH,
    WeightsChecksumError,
    WeightsNotFoundError,
    create_backbone,
    known_weight_files,
    parse_weight_source,
    read_state_dict,
)
from perceptiq.backbones import weights as weights_module


@pytest.fixture(scope="module")
def tiny():
    return create_backbone(TINY_ARCH, "random", seed=0)


def _features(backbone):
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 224, 224)
    tokens = backbone.tokenize(["a good photo.", "a bad photo."])
    with torch.no_grad():
        return backbone.encode_image(pixels), backbone.encode_text(tokens)


def test_tiny_shapes_and_normalisation(tiny):
    img, txt = _features(tiny)
    assert img.shape == (2, 64) and txt.shape == (2, 64)
    assert torch.allclose(img.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert tiny.info.image_size == 224 and len(tiny.visual_blocks) == 4 and len(tiny.text_blocks) == 4


def test_random_weights_are_seeded():
    a = create_backbone(TINY_ARCH, "random", seed=3)
    b = create_backbone(TINY_ARCH, "random", seed=3)
    c = create_backbone(TINY_ARCH, "random", seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["clip.visual.conv1.weight"], sc["clip.visual.conv1.weight"])


def test_text_from_embeddings_equals_open_clip_encode_text(tiny):
    tokens = tiny.tokenize(["perfect-quality image", "bad image"])
    with torch.no_grad():
        direct = tiny.encode_text(tokens)
        via_embeddings = tiny.encode_text_embeddings(tiny.token_embeddings(tokens), tokens)
    assert torch.allclose(direct, via_embeddings, atol=1e-6)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", "-wrapped.pth"])
def test_local_checkpoint_round_trip(tmp_path, tiny, suffix):
    state = {k[len("clip."):]: v.clone() for k, v in tiny.state_dict().items()}
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    elif suffix == ".pt":
        torch.save(state, path)
    else:  # a training script's wrapper: {"state_dict": {"module.<key>": ...}}
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    loaded = create_backbone(TINY_ARCH, str(path), seed=99)  # a different seed: weights must come from file
    for a, b in zip(_features(tiny), _features(loaded)):
        assert torch.allclose(a, b, atol=1e-6)


def test_uniqa_prefix_reads_a_nested_checkpoint(tmp_path, tiny):
    state = {f"clip_model.{k[len('clip.'):]}": v for k, v in tiny.state_dict().items()}
    path = tmp_path / "uniqa_clip_b16.pt"
    torch.save({"model": state}, path)
    source = parse_weight_source(f"uniqa:{path}")
    assert source.format == "uniqa" and source.path == path
    loaded = create_backbone(TINY_ARCH, f"uniqa:{path}", quick_gelu=False)
    assert torch.allclose(_features(tiny)[0], _features(loaded)[0], atol=1e-6)


def test_torchscript_archive_is_read_without_unpickling(tmp_path, tiny):
    class Holder(torch.nn.Module):  # a scripted module whose state dict has CLIP's key names
        def __init__(self, clip):
            super().__init__()
            for name, child in clip.named_children():
                self.add_module(name, child)
            for name, param in clip.named_parameters(recurse=False):
                self.register_parameter(name, param)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.logit_scale

    scripted = torch.jit.trace(Holder(tiny.clip), torch.ones(1))
    path = tmp_path / "tiny-openai.pt"
    scripted.save(str(path))
    state = read_state_dict(path)
    assert set(state) == {k[len("clip."):] for k in tiny.state_dict()}
    loaded = create_backbone(TINY_ARCH, str(path), quick_gelu=False)
    assert torch.allclose(_features(tiny)[1], _features(loaded)[1], atol=1e-6)


class NotTensors:  # module level so torch.save can pickle it; loading must refuse it
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"payload": NotTensors()}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        read_state_dict(path)


def test_missing_file_names_it(tmp_path):
    missing = tmp_path / "nowhere" / "ViT-B-16.pt"
    with pytest.raises(WeightsNotFoundError, match="nowhere/ViT-B-16.pt"):
        create_backbone(TINY_ARCH, str(missing))


def test_checkpoint_that_does_not_fit_is_refused(tmp_path):
    path = tmp_path / "wrong.safetensors"
    save_file({"visual.conv1.weight": torch.zeros(3, 3, 3, 3)}, str(path))
    with pytest.raises(ValueError, match="does not fit test-tiny"):
        create_backbone(TINY_ARCH, str(path))


def test_known_file_checksum_is_verified(tmp_path, monkeypatch, tiny):
    state = {k[len("clip."):]: v for k, v in tiny.state_dict().items()}
    path = tmp_path / "tiny-known.safetensors"
    save_file(state, str(path))
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    row = weights_module.KnownWeightFile(path.name, TINY_ARCH, "test", "safetensors", False, good)
    monkeypatch.setitem(known_weight_files(), path.name, row)
    create_backbone(TINY_ARCH, str(path))  # matches: loads
    bad = weights_module.KnownWeightFile(path.name, TINY_ARCH, "test", "safetensors", False, "0" * 64)
    monkeypatch.setitem(known_weight_files(), path.name, bad)
    with pytest.raises(WeightsChecksumError, match="does not match"):
        create_backbone(TINY_ARCH, str(path))


def test_openai_checksums_are_recorded():
    table = known_weight_files()
    assert table["ViT-B-16.pt"].sha256.startswith("5806e77c") and table["ViT-B-16.pt"].quick_gelu


def test_unreachable_hub_fails_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setattr(weights_module, "_hub_reachable", lambda *a, **k: False)
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as err:
        create_backbone("ViT-B-16", "openai", cache_dir=str(tmp_path))
    assert time.monotonic() - start < 30
    message = str(err.value)
    assert "ViT-B-16.pt" in message and "--weights" in message and "PERCEPTIQ_WEIGHTS" in message


def test_unknown_tag_lists_known_tags():
    with pytest.raises(WeightsNotFoundError, match="laion400m_e31"):
        create_backbone("ViT-B-16", "laion-typo")


def test_unknown_architecture_suggests_close_names():
    with pytest.raises(ValueError, match="Did you mean 'ViT-B-16'"):
        create_backbone("ViT-B-61", "random")


def test_weight_source_parsing(monkeypatch):
    assert parse_weight_source("random").is_random
    assert parse_weight_source("openai").kind == "tag"
    assert parse_weight_source("./w/model.safetensors").format == "safetensors"
    monkeypatch.setenv("PERCEPTIQ_WEIGHTS", "random")
    assert parse_weight_source(None).is_random


def test_test_tiny_config_is_data():
    from importlib import resources

    cfg = json.loads(resources.files("perceptiq.backbones").joinpath("configs/test-tiny.json").read_text())
    assert cfg["vision_cfg"]["layers"] == 4 and cfg["vision_cfg"]["image_size"] == 224
