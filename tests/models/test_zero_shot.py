"""Zero-shot model: scores equal a hand computation; text features are computed once; metadata as data."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from perceptiq.models import ZeroShotAssessor, build_model, get_model_spec, list_models
from perceptiq.prompts import level_prompts, scene_level_prompts


@pytest.fixture(scope="module")
def pixels():
    torch.manual_seed(0)
    return torch.randn(4, 3, 224, 224)


def _manual_level_score(backbone, prompts, pixels):
    with torch.no_grad():
        img = F.normalize(backbone.clip.encode_image(pixels), dim=-1)
        txt = F.normalize(backbone.clip.encode_text(backbone.tokenize(prompts)), dim=-1)
        probs = torch.softmax(backbone.clip.logit_scale.exp() * img @ txt.t(), dim=-1)
    return probs @ torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])


def test_level_score_equals_hand_computation(pixels):
    bundle = build_model("zero-shot", backbone="test-tiny", weights="random")
    with torch.no_grad():
        got = bundle.module(pixels).scores
    expected = _manual_level_score(bundle.module.backbone, level_prompts("quality"), pixels)
    assert torch.allclose(got, expected, atol=1e-5)
    assert ((got >= 0) & (got <= 1)).all()


def test_antonym_score_equals_hand_computation(pixels):
    bundle = build_model("zero-shot-antonym", backbone="test-tiny", weights="random")
    b = bundle.module.backbone
    with torch.no_grad():
        got = bundle.module(pixels).scores
        img = F.normalize(b.clip.encode_image(pixels), dim=-1)
        txt = F.normalize(b.clip.encode_text(b.tokenize(["Good photo.", "Bad photo."])), dim=-1)
        logits = b.clip.logit_scale.exp() * img @ txt.t()
        expected = torch.softmax(logits, dim=-1)[:, 0]
    assert torch.allclose(got, expected, atol=1e-5)


def test_scene_prompts_follow_gamma_table_11():
    assert scene_level_prompts("quality", "underwater")[0] == "underwater bad-quality image"
    assert scene_level_prompts("quality", "ai-generated")[4] == "AI-generated perfect-quality image"
    assert scene_level_prompts("aesthetics", "face")[2] == "natural fair-aesthetics image"
    assert level_prompts("naive") == ["bad image", "poor image", "fair image", "good image", "perfect image"]
    assert level_prompts("general")[1] == "general poor-quality image"


def test_auto_scene_uses_the_classified_scene_prompts(pixels):
    auto = build_model("zero-shot", backbone="test-tiny", weights="random", scene="auto").module
    with torch.no_grad():
        out = auto(pixels)
    assert len(out.scenes) == 4
    for i, scene in enumerate(out.scenes):
        fixed = build_model("zero-shot", backbone="test-tiny", weights="random", scene=scene).module
        with torch.no_grad():
            assert torch.allclose(fixed(pixels[i:i + 1]).scores, out.scores[i:i + 1], atol=1e-5)


def test_text_features_are_never_recomputed_per_image(pixels, monkeypatch):
    module = build_model("zero-shot", backbone="test-tiny", weights="random", scene="auto").module
    calls = []
    original = module.backbone.encode_text
    monkeypatch.setattr(module.backbone, "encode_text", lambda *a, **k: calls.append(1) or original(*a, **k))
    with torch.no_grad():
        module(pixels)
        module(pixels)
    assert calls == []


def test_backbone_is_frozen():
    module = build_model("zero-shot", backbone="test-tiny", weights="random").module
    assert not any(p.requires_grad for p in module.parameters())


def test_registry_metadata_and_did_you_mean():
    names = {s.name for s in list_models()}
    assert {"zero-shot", "zero-shot-antonym"} <= names
    spec = get_model_spec("zero-shot")
    assert spec.score_range == (0.0, 1.0) and spec.higher_is_better and spec.default_backbone == "ViT-B-16"
    with pytest.raises(KeyError, match="Did you mean 'zero-shot'"):
        get_model_spec("zero-shoot")


def test_bad_task_and_scene_are_refused():
    with pytest.raises(ValueError, match="unknown task"):
        build_model("zero-shot", backbone="test-tiny", weights="random", task="beauty")
    with pytest.raises(ValueError, match="does not take scene"):
        build_model("zero-shot-antonym", backbone="test-tiny", weights="random", scene="face")
    with pytest.raises(ValueError, match="unknown zero-shot method"):
        ZeroShotAssessor(build_model("zero-shot", backbone="test-tiny", weights="random").module.backbone,
                         method="median")
