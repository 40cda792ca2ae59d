"""GammaModel: CLIP + MoAE + adapter + learnable C (Gamma Eq. 1-5), prompt keys, caching, checkpoints,
and the parameter counts of Tables 5 and 10 on a real-size ViT-B/16."""
from __future__ import annotations

import copy

import pytest
import torch

from perceptiq.backbones import create_backbone
from perceptiq.experts import find_moae
from perceptiq.models import build_model, save_checkpoint
from perceptiq.models.gamma import GammaModel, default_prompt_key, parse_prompt_key, prompt_key_texts
from perceptiq.prompts import level_prompts, scene_classifier_prompts

TRAINED_SUFFIXES = ("fc_weight", "fc_bias", "proj_weight", "proj_bias", "router.weight", "sigma")


_TINY = []


def tiny_backbone():
    """A fresh copy of one tiny random CLIP (seed 0), built once per test session (the tokenizer is shared)."""
    if not _TINY:
        _TINY.append(create_backbone("test-tiny", "random"))
    template = _TINY[0]
    return copy.deepcopy(template, memo={id(template.tokenizer): template.tokenizer})


def tiny_gamma(**options) -> GammaModel:
    options.setdefault("n_layers", 2)
    return GammaModel(tiny_backbone(), **options)


@pytest.fixture(scope="module")
def plain():
    """A plain tiny CLIP with the same random weights as every tiny Gamma model (seed 0)."""
    return tiny_backbone()


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def set_sigma(model: GammaModel, value: float) -> None:
    with torch.no_grad():
        for module in find_moae(model.backbone):
            module.sigma.fill_(value)


def plain_scores(plain, pixels, prompts, level_values) -> torch.Tensor:
    """Eq. 1 on the plain CLIP, written out here (not through ``perceptiq.heads``):
    q = sum_k C_k exp(s cos(I, T_k)) / sum_j exp(s cos(I, T_j)), s = CLIP's logit scale = 1 / tau."""
    with torch.no_grad():
        image = plain.encode_image(pixels).double()
        text = plain.encode_text(plain.tokenize(prompts)).double()
        cosines = (image / image.norm(dim=1, keepdim=True)) @ (text / text.norm(dim=1, keepdim=True)).t()
        weights = torch.exp(float(plain.logit_scale) * cosines)
        return ((weights / weights.sum(dim=1, keepdim=True)) @ torch.tensor(level_values).double()).float()


# -- structure and initial state ---------------------------------------------------------------------------
def test_at_zero_sigma_features_and_scores_equal_plain_clip(plain, pixels):
    model = tiny_gamma(n_layers=4).eval()
    tokens = plain.tokenize(level_prompts("naive"))
    with torch.no_grad():
        close = dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.backbone.encode_image(pixels), plain.encode_image(pixels), **close)
        torch.testing.assert_close(model.backbone.encode_text(tokens), plain.encode_text(tokens), **close)
        # the residual adapter starts as the identity, so the untrained score is the zero-shot one with C
        expected = plain_scores(plain, pixels, level_prompts("naive"), [0.2, 0.4, 0.6, 0.8, 1.0])
        torch.testing.assert_close(model(pixels).scores, expected, rtol=1e-5, atol=1e-6)


def test_zero_experts_equal_plain_clip_and_train_only_the_head(plain, pixels):
    model = tiny_gamma(n_experts=0, n_layers=4).eval()
    assert [m.n_experts for m in find_moae(model.backbone)] == [0] * 8
    with torch.no_grad():
        image = model.backbone.encode_image(pixels)
        torch.testing.assert_close(image, plain.encode_image(pixels), rtol=1e-5, atol=1e-6)
    assert sorted(model.trainable_state_dict()) == [
        "adapter.down.bias", "adapter.down.weight", "adapter.up.bias", "adapter.up.weight", "level_values"]


def test_only_experts_routers_sigma_adapter_and_c_are_trainable():
    model = tiny_gamma(n_layers=2)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    moae_names = [n for n in trainable if ".mlp." in n]
    assert len(moae_names) == 2 * 2 * len(TRAINED_SUFFIXES)  # 2 layers x 2 towers
    for name in moae_names:
        assert name.endswith(TRAINED_SUFFIXES) and ".shared." not in name, name
        assert int(name.split(".resblocks.")[1].split(".")[0]) in (2, 3), name  # last 2 of 4 blocks
    assert sorted(set(trainable) - set(moae_names)) == [
        "adapter.down.bias", "adapter.down.weight", "adapter.up.bias", "adapter.up.weight", "level_values"]
    torch.testing.assert_close(model.level_values.detach(), torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0]))
    assert not model.backbone.clip.logit_scale.requires_grad
    unfrozen = tiny_gamma(freeze_shared=False)
    assert any(".mlp.shared.c_fc.weight" in n for n, p in unfrozen.named_parameters() if p.requires_grad)
    fixed_sigma = tiny_gamma(use_sigma=False)
    assert not any(n.endswith("sigma") for n, _ in fixed_sigma.named_parameters())


def test_sigma_frozen_at_zero_disables_the_moae_for_good(pixels):
    """train_sigma=False (the end-to-end test's control): sigma is no trainable parameter, stays 0 through
    training steps, and the experts never move, so the model keeps scoring as CLIP + adapter + C."""
    model = tiny_gamma(n_layers=2, train_sigma=False).train()
    assert not any(n.endswith("sigma") for n in model.trainable_state_dict())
    experts = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith(("fc_weight", "router.weight"))}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        ((model(pixels, prompt_keys=["sdp:face:quality"] * 3).scores - 0.9) ** 2).sum().backward()
        optimizer.step()
    assert all(float(m.sigma) == 0.0 for m in find_moae(model.backbone))
    for name, before in experts.items():
        assert torch.equal(dict(model.named_parameters())[name].detach(), before), name


def test_first_step_gradient_reaches_sigma_only_then_every_expert_and_router(pixels):
    model = tiny_gamma(n_layers=2).train()
    model(pixels).scores.sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    for name, grad in grads.items():
        # sigma = 0 multiplies every expert/router gradient; a zero-initialised adapter output layer
        # blocks the gradient of the adapter's first layer
        moving = name.endswith(("sigma", "level_values")) or name.startswith("adapter.up")
        assert bool(grad is not None and grad.abs().sum() > 0) is moving, name
    model.zero_grad(set_to_none=True)
    set_sigma(model, 0.5)
    keys = ["naive", "sdp:face:quality", "quality"]
    model(pixels, prompt_keys=keys).scores.sum().backward()
    modules = find_moae(model.backbone)
    for module in modules:
        for i in range(module.n_experts):
            assert module.fc_weight.grad[i].abs().sum() > 0 and module.proj_weight.grad[i].abs().sum() > 0
        assert module.sigma.grad.abs() > 0
        # the experts are still identical copies: the router has nothing to choose between yet
        assert module.router.weight.grad.abs().max() < 1e-6
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    model.zero_grad(set_to_none=True)
    model(pixels, prompt_keys=keys).scores.sum().backward()
    for module in modules:  # one step later the experts differ and every router learns
        assert module.router.weight.grad.abs().max() > 1e-6


# -- parameter counts on the real architecture ----------------------------------------------------------------
def test_vit_b16_parameter_counts_match_tables_5_and_10():
    vit_b16 = create_backbone("ViT-B-16", "random")
    plain_total = sum(p.numel() for p in vit_b16.parameters())
    assert abs(plain_total / 1e6 - 149.62) < 0.01
    vit_b16 = vit_b16.to("meta")  # shapes only from here on: copies and MoAE insertion cost nothing
    ffn_visual = 768 * 3072 + 3072 + 3072 * 768 + 768
    ffn_text = 512 * 2048 + 2048 + 2048 * 512 + 512
    per_layer = 3 * ffn_visual + 3 * ffn_text + 3 * 768 + 3 * 512 + 2  # experts, routers, two sigmas
    paper_totals = {0: 149.9, 4: 231.8, 6: 272.7, 8: 313.6, 12: 395.5}
    for n_layers, paper in paper_totals.items():
        model = GammaModel(copy.deepcopy(vit_b16), n_layers=n_layers)
        counts = model.count_parameters()
        print(f"MoAE layers {n_layers:2d}: total {counts['total']:,} ({counts['total'] / 1e6:.2f}M, "
              f"Table 5: {paper}M), trainable {counts['trainable']:,} (MoAE {counts['moae_trainable']:,}, "
              f"adapter+C {counts['head_trainable']:,})")
        assert abs(counts["total"] / 1e6 - paper) < 0.2
        assert counts["moae_trainable"] == n_layers * per_layer
        assert counts["head_trainable"] == 512 * 256 + 256 + 256 * 512 + 512 + 5
        assert counts["trainable"] == counts["moae_trainable"] + counts["head_trainable"]
        if n_layers == 6:
            # Table 10's 122.8M trainable is the MoAE share; with adapter and C it is 123.08M
            assert abs(counts["moae_trainable"] / 1e6 - 122.8) < 0.05
        del model
    assert abs(per_layer / 1e6 - 20.47) < 0.005


# -- prompt keys ------------------------------------------------------------------------------------------
# Gamma Table 11 (Appendix A.4), copied by hand: datasets -> the five prompts of their scene
_LEVELS = ("bad", "poor", "fair", "good", "perfect")
TABLE_11 = {
    ("live", "csiq", "tid2013", "kadid10k", "livec", "koniq10k", "spaq"):
        [f"natural {level}-quality image" for level in _LEVELS],
    ("agiqa3k",): [f"AI-generated {level}-quality image" for level in _LEVELS],
    ("gfiqa20k",): [f"face {level}-quality image" for level in _LEVELS],
    ("uwiqa",): [f"underwater {level}-quality image" for level in _LEVELS],
    ("ava", "aadb"): [f"natural {level}-aesthetics image" for level in _LEVELS],
}


def test_every_dataset_of_table_11_is_prompted_with_its_scenes_five_prompts_in_sdp_training(tmp_path):
    """The full Table 11 mapping, through the path training takes: registry scene and task -> the SDP
    model's per-sample prompt key (``to_items``) -> the five prompt texts."""
    from PIL import Image

    from perceptiq.data import LabeledDataset, Sample, get_dataset_spec
    from perceptiq.training.experiment import to_items

    model = tiny_gamma(scene="auto", prompt_style="sdp", n_layers=0)    # gamma-mixed-sdp's model section
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    seen = set()
    for names, prompts in TABLE_11.items():
        for name in names:
            dataset = LabeledDataset(get_dataset_spec(name), [Sample(image, 0.5, 0.5, dataset=name)], tmp_path)
            key = to_items(dataset.samples, dataset, model)[0].prompt_key
            assert prompt_key_texts(key) == prompts, name
            seen.add(name)
    assert len(seen) == 12                                  # the twelve datasets of the mixed training


def test_prompt_keys_parse_canonically_and_reject_bad_input():
    assert str(parse_prompt_key("sdp:face:quality")) == "sdp:face:quality"
    assert str(parse_prompt_key("sdp:auto:aesthetics")) == "sdp:natural:aesthetics"
    assert prompt_key_texts("sdp:face:quality")[0] == "face bad-quality image"
    assert prompt_key_texts("sdp:natural:aesthetics")[-1] == "natural perfect-aesthetics image"
    assert prompt_key_texts("naive") == ["bad image", "poor image", "fair image", "good image", "perfect image"]
    assert prompt_key_texts("quality")[1] == "poor-quality image"
    assert prompt_key_texts("general:aesthetics")[2] == "general fair-aesthetics image"
    for bad, message in (("sdp:face:aesthetics", "natural scene only"), ("sdp:mars:quality", "unknown scene"),
                         ("general", "expected naive"), ("naive:quality", "expected naive"),
                         ("sdp:face:beauty", "unknown task")):
        with pytest.raises(ValueError, match=message):
            parse_prompt_key(bad)
    with pytest.raises(ValueError, match="classify the image's scene"):
        prompt_key_texts("sdp:auto:quality")


def test_default_prompt_key_follows_style_task_and_scene():
    assert str(default_prompt_key(None, "quality", None)) == "naive"
    assert str(default_prompt_key(None, "quality", "face")) == "sdp:face:quality"
    assert str(default_prompt_key("sdp", "aesthetics", None)) == "sdp:natural:aesthetics"
    assert str(default_prompt_key("general", "quality", None)) == "general:quality"
    with pytest.raises(ValueError, match="needs prompt_style 'sdp'"):
        default_prompt_key("naive", "quality", "face")
    with pytest.raises(ValueError, match="needs a scene"):
        default_prompt_key("sdp", "quality", None)


def test_each_sample_is_scored_with_its_own_prompt_set(pixels):
    model = tiny_gamma().eval()
    set_sigma(model, 0.3)
    keys = ["naive", "sdp:underwater:quality", "naive"]
    with torch.no_grad():
        mixed = model(pixels, prompt_keys=keys)
        one_by_one = torch.cat([model(pixels[i:i + 1], prompt_keys=[k]).scores for i, k in enumerate(keys)])
    torch.testing.assert_close(mixed.scores, one_by_one, rtol=1e-5, atol=1e-6)
    assert mixed.scenes is None
    with pytest.raises(ValueError, match="2 prompt keys for a batch of 3"):
        model(pixels, prompt_keys=keys[:2])


# -- text features: once per distinct set in training, cached at inference -------------------------------------
class CountingEncoder:
    def __init__(self, backbone):
        self.calls, self.rows, self.original = 0, [], backbone.encode_text

    def __call__(self, tokens, normalize=True):
        self.calls += 1
        self.rows.append(tokens.shape[0])
        return self.original(tokens, normalize)


def test_training_reencodes_each_distinct_prompt_set_once_per_step(pixels, monkeypatch):
    model = tiny_gamma().train()
    counter = CountingEncoder(model.backbone)
    monkeypatch.setattr(model.backbone, "encode_text", counter)
    for _ in range(2):
        model(pixels, prompt_keys=["naive", "sdp:face:quality", "naive"])
    assert counter.calls == 2 and counter.rows == [10, 10]  # 2 distinct sets x 5 prompts, every step


def test_inference_caches_text_features_until_a_parameter_changes(pixels, monkeypatch):
    model = tiny_gamma().eval()
    counter = CountingEncoder(model.backbone)
    monkeypatch.setattr(model.backbone, "encode_text", counter)
    with torch.no_grad():
        first = model(pixels).scores
        again = model(pixels).scores
        assert counter.calls == 1
        torch.testing.assert_close(first, again)
        set_sigma(model, 0.8)  # an in-place edit, as an optimizer step or load_state_dict makes
        changed = model(pixels).scores
        assert counter.calls == 2
    fresh = tiny_gamma().eval()
    set_sigma(fresh, 0.8)
    with torch.no_grad():
        torch.testing.assert_close(changed, fresh(pixels).scores, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(first, changed)


# -- scenes ----------------------------------------------------------------------------------------------
def test_auto_scene_classifies_with_original_clip_features(plain, pixels):
    model = tiny_gamma(scene="auto").eval()
    set_sigma(model, 1.0)  # the classification must ignore the adaptive experts
    classifier = scene_classifier_prompts()
    names = list(classifier)
    with torch.no_grad():
        logits = plain.encode_image(pixels) @ plain.encode_text(plain.tokenize(list(classifier.values()))).t()
        expected = [names[i] for i in logits.argmax(-1).tolist()]
        out = model(pixels)
        assert model.classify_scenes(pixels) == expected and out.scenes == expected
        explicit = model(pixels, prompt_keys=[f"sdp:{s}:quality" for s in expected])
    torch.testing.assert_close(out.scores, explicit.scores)


# -- Table 6, Fig. 5b ----------------------------------------------------------------------------------------
def test_forced_expert_changes_scores_and_is_undone(pixels):
    model = tiny_gamma().eval()
    set_sigma(model, 0.5)
    with torch.no_grad():
        for module in find_moae(model.backbone):
            module.fc_weight[1].mul_(1.5)
        full = model(pixels).scores
        model.set_forced_expert(1, renormalize=True)
        forced = model(pixels).scores
        assert all(m.force_expert == 1 and m.force_renormalize for m in find_moae(model.backbone))
        model.set_forced_expert(None)
        torch.testing.assert_close(model(pixels).scores, full)
    assert not torch.allclose(full, forced)


def test_mean_router_activation_is_a_distribution_per_image(pixels):
    model = tiny_gamma(n_experts=3, router_init_std=0.5).eval()
    activation = model.mean_router_activation(pixels)
    assert activation.shape == (3, 3)
    torch.testing.assert_close(activation.sum(-1), torch.ones(3))
    assert all(m.last_router_probs is None and not m.record_routing for m in find_moae(model.backbone))


# -- registry and checkpoints ------------------------------------------------------------------------------------
def test_factory_builds_and_a_checkpoint_round_trip_gives_identical_scores(tmp_path, pixels):
    bundle = build_model("gamma", backbone="test-tiny", weights="random", scene="face", n_layers=2)
    model = bundle.module
    assert isinstance(model, GammaModel) and str(model.default_key) == "sdp:face:quality"
    assert bundle.spec.scenes == ("natural", "ai-generated", "face", "underwater", "auto")
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        expected = model(pixels).scores
    tensors = model.trainable_state_dict()
    save_checkpoint(tmp_path / "gamma.safetensors", tensors,
                    {**bundle.config, "trained_parameters": sorted(tensors)})
    restored = build_model(str(tmp_path / "gamma.safetensors")).module
    with torch.no_grad():
        torch.testing.assert_close(restored(pixels).scores, expected, rtol=0, atol=0)
    assert restored(pixels).scenes == ["face"] * 3
