"""GRMPModel: Eq. 2 score, Eq. 3 loss, trainable sets, semantic distributions, registry and checkpoints."""
import pytest
import torch

from perceptiq.backbones import create_backbone
from perceptiq.models import build_model, get_model_spec, save_checkpoint
from perceptiq.models.grmp import GRMPModel, build_grmp, grmp_quality_loss
from perceptiq.models.registry import get_factory


@pytest.fixture()
def backbone():
    return create_backbone("test-tiny", "random")


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(2))


def test_score_is_eq2_softmax_of_scaled_cosines(backbone, pixels):
    model = GRMPModel(backbone, n_visual_tokens=2)
    scores = model(pixels).scores
    assert scores.shape == (4,)
    assert bool(((scores > 0) & (scores < 1)).all())
    image = model.visual_prompts.encode_image(pixels)
    text = model.text_context()
    logits = backbone.logit_scale * image @ text.t()
    torch.testing.assert_close(scores, torch.softmax(logits, dim=-1)[:, 0])


def test_quality_loss_is_eq3_bce():
    p = torch.tensor([0.9, 0.2, 0.5])
    y = torch.tensor([1.0, 0.25, 0.0])
    expected = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    torch.testing.assert_close(grmp_quality_loss(p, y), expected)
    with pytest.raises(ValueError, match=r"rescaled to \[0, 1\].*\[0, 4.5\]"):
        grmp_quality_loss(p, torch.tensor([0.0, 1.0, 4.5]))
    with pytest.raises(ValueError, match="must match"):
        grmp_quality_loss(p, torch.tensor([0.0, 1.0]))


def test_trainable_modes(backbone):
    model = GRMPModel(backbone, n_visual_tokens=2)
    assert set(model.trainable_parameter_names()) == {"text_context.ctx", "visual_prompts.prompts"}
    names = set(model.set_trainable("prompts+last2"))
    assert {"text_context.ctx", "visual_prompts.prompts"} <= names
    for tower in ("backbone.clip.visual.transformer", "backbone.clip.transformer"):
        assert f"{tower}.resblocks.3.mlp.c_fc.weight" in names
        assert f"{tower}.resblocks.2.ln_1.weight" in names
        assert f"{tower}.resblocks.2.attn.in_proj_weight" in names
        assert not any(n.startswith(f"{tower}.resblocks.1.") for n in names)
    assert "backbone.clip.visual.proj" not in names and "backbone.clip.ln_final.weight" not in names
    names = set(model.set_trainable("encoders"))
    assert "backbone.clip.token_embedding.weight" in names and "backbone.clip.visual.conv1.weight" in names
    assert not names & {"backbone.clip.logit_scale", "text_context.ctx", "visual_prompts.prompts"}
    assert not any(n.startswith("original_visual") for n in names)
    assert model.set_trainable("none") == []
    with pytest.raises(ValueError, match="unknown trainable mode 'everything'"):
        model.set_trainable("everything")
    model.set_trainable("prompts")
    assert set(model.trainable_state_dict()) == {"text_context.ctx", "visual_prompts.prompts"}
    assert all(not t.requires_grad for t in model.trainable_state_dict().values())


def test_semantic_probabilities_follow_the_tuned_model_frozen_ones_do_not(backbone, pixels):
    model = GRMPModel(backbone, n_visual_tokens=2)
    plain_image = backbone.encode_image(pixels)
    text = backbone.encode_text(backbone.tokenize(model.semantic_prompts))
    reference = torch.softmax(backbone.logit_scale * plain_image @ text.t(), dim=-1)
    torch.testing.assert_close(model.frozen_semantic_probabilities(pixels), reference)
    p_qua = model.semantic_probabilities(pixels)
    assert p_qua.shape == (4, 9) and p_qua.requires_grad
    torch.testing.assert_close(p_qua.sum(-1), torch.ones(4))

    model.set_trainable("prompts+last2")                      # snapshot taken before weights can change
    assert model.original_visual is not None
    with torch.no_grad():
        backbone.visual_blocks[3].mlp.c_fc.weight.add_(0.5)
        backbone.text_blocks[3].mlp.c_fc.weight.add_(0.5)
    torch.testing.assert_close(model.frozen_semantic_probabilities(pixels), reference)
    image = model.image_features(pixels)
    text_now = backbone.encode_text(backbone.tokenize(model.semantic_prompts))
    expected_qua = torch.softmax(backbone.logit_scale * image @ text_now.t(), dim=-1)
    torch.testing.assert_close(model.semantic_probabilities(pixels), expected_qua)
    assert not torch.allclose(expected_qua, reference, atol=1e-4)


def test_no_original_after_loading_backbone_weights_without_snapshot(backbone, pixels):
    model = GRMPModel(backbone, n_visual_tokens=2)
    key = "backbone.clip.visual.transformer.resblocks.3.mlp.c_fc.bias"
    model.load_state_dict({key: torch.zeros_like(model.state_dict()[key])}, strict=False)
    with pytest.raises(RuntimeError, match="original CLIP is no longer available"):
        model.frozen_semantic_probabilities(pixels)
    with pytest.raises(RuntimeError, match="take the snapshot first"):
        model.snapshot_original()


def test_frozen_text_prompt_and_no_visual_prompt(backbone, pixels):
    with pytest.raises(ValueError, match="frozen random text context"):
        GRMPModel(backbone, use_text_prompt=False)
    model = GRMPModel(backbone, use_text_prompt=False, ctx_init="a photo of a", use_visual_prompt=False)
    assert model.visual_prompts is None and model.trainable_parameter_names() == []
    text = backbone.encode_text(backbone.tokenize(["a photo of a high quality.", "a photo of a low quality."]))
    logits = backbone.logit_scale * backbone.encode_image(pixels) @ text.t()
    torch.testing.assert_close(model(pixels).scores, torch.softmax(logits, -1)[:, 0], atol=1e-5, rtol=1e-5)


def test_task_and_scene_are_checked(backbone):
    with pytest.raises(ValueError, match="assesses quality"):
        GRMPModel(backbone, task="aesthetics")
    with pytest.raises(ValueError, match="no scene prompts"):
        GRMPModel(backbone, scene="face")


def test_a_few_steps_lower_the_eq3_loss(backbone):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 224, 224, generator=generator)
    targets = torch.linspace(0.05, 0.95, 8)
    model = GRMPModel(backbone, n_visual_tokens=2).train()
    optimizer = torch.optim.Adam(model.trainable_parameters().values(), lr=5e-2)
    losses = []
    for _ in range(8):
        loss = grmp_quality_loss(model(images).scores, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.01
    assert all(p.grad is None for p in backbone.parameters())


def test_registry_and_checkpoint_round_trip(tmp_path, pixels):
    spec = get_model_spec("grmp-iqa")
    assert (spec.factory, spec.tasks, spec.score_range, spec.higher_is_better) == ("grmp", ("quality",), (0.0, 1.0), True)
    assert (spec.default_backbone, spec.default_weights) == ("ViT-B-16", "openai")
    assert get_factory("grmp") is build_grmp

    bundle = build_model("grmp-iqa", backbone="test-tiny", weights="random", n_visual_tokens=2)
    model = bundle.module
    model.set_trainable("prompts+last1")
    with torch.no_grad():
        for parameter in model.trainable_parameters().values():
            parameter.add_(0.01 * torch.randn_like(parameter))
    expected = model(pixels).scores
    tensors = model.trainable_state_dict()
    config = dict(bundle.config, trained_parameters=sorted(tensors))
    save_checkpoint(tmp_path / "grmp.safetensors", tensors, config)
    rebuilt = build_model(str(tmp_path / "grmp.safetensors")).module
    torch.testing.assert_close(rebuilt(pixels).scores, expected)
    assert not torch.allclose(GRMPModel(create_backbone("test-tiny", "random"), n_visual_tokens=2)(pixels).scores,
                              expected)


# -- text features: fresh while the text side trains, cached at inference ----------------------------------
class CountingTextEncoder:
    def __init__(self, backbone):
        self.calls, self.original = 0, backbone.encode_text_embeddings

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.original(*args, **kwargs)


def test_inference_encodes_the_prompts_once_until_a_text_weight_changes(backbone, pixels, monkeypatch):
    model = GRMPModel(backbone, n_visual_tokens=2).eval()
    counter = CountingTextEncoder(backbone)
    monkeypatch.setattr(backbone, "encode_text_embeddings", counter)
    with torch.inference_mode():
        first = model(pixels).scores
        torch.testing.assert_close(model(pixels).scores, first)
    assert counter.calls == 1
    with torch.no_grad():
        model.text_context.ctx.add_(torch.randn(model.text_context.ctx.shape, generator=torch.Generator().manual_seed(0)))
        changed = model(pixels).scores
        model(pixels)
    assert counter.calls == 2
    reference = backbone.logit_scale * model.visual_prompts.encode_image(pixels) @ model.text_context().t()
    torch.testing.assert_close(changed, torch.softmax(reference, dim=-1)[:, 0].detach())
    assert not torch.allclose(first, changed)
    # a cache filled under inference_mode serves a later grad-enabled forward whose text side is frozen
    model.text_context.ctx.requires_grad_(False)
    model.visual_prompts.prompts.requires_grad_(True)
    model(pixels).scores.sum().backward()
    assert model.visual_prompts.prompts.grad is not None


def test_training_and_functional_calls_get_a_graph_through_the_context(backbone, pixels):
    model = GRMPModel(backbone, n_visual_tokens=2).train()
    with torch.no_grad():
        model(pixels)                       # nothing cached can leak into the graph below
    model(pixels).scores.sum().backward()
    assert model.text_context.ctx.grad.abs().sum() > 0
    # torch.func (the meta step): the gradient through functional_call equals the module's
    params = {"text_context.ctx": model.text_context.ctx.detach().clone()}

    def loss(p):
        return torch.func.functional_call(model, p, (pixels,)).scores.sum()

    functional = torch.func.grad(loss)(params)["text_context.ctx"]
    torch.testing.assert_close(functional, model.text_context.ctx.grad, rtol=1e-4, atol=1e-6)
    model.eval()
    with torch.no_grad():
        model(pixels)                       # fills the cache
    functional_eval = torch.func.grad(loss)(params)["text_context.ctx"]
    assert functional_eval.abs().sum() > 0.5 * functional.abs().sum()   # not the zero of a cached constant
    torch.testing.assert_close(functional_eval, functional, rtol=1e-3, atol=1e-5)


def test_the_frozen_original_clip_stays_in_eval_mode_when_the_model_trains(backbone):
    model = GRMPModel(backbone, n_visual_tokens=2, keep_original=True)
    model.train()
    assert model.training and model.visual_prompts.training
    assert not model.original_visual.training    # inference-only: torch's fused attention path stays open
    assert all(not m.training for m in model.original_visual.modules())


def test_one_visual_prompt_token_per_layer_by_default_as_section_3_2_says():
    """'A learnable token P^l is appended to the token sequence in each ViT layer' (GRMP-IQA section 3.2):
    the model's default and every GRMP recipe use one token per vision block."""
    from perceptiq.recipes import list_recipes, load_recipe

    backbone = create_backbone("test-tiny", "random")
    model = GRMPModel(backbone)
    assert tuple(model.visual_prompts.prompts.shape) == (len(backbone.visual_blocks), 1,
                                                         backbone.clip.visual.transformer.width)
    grmp_recipes = [n for n in list_recipes() if n.startswith("grmp-")]
    assert len(grmp_recipes) == 8
    for name in grmp_recipes:
        assert load_recipe(name)["model"]["options"]["n_visual_tokens"] == 1, name
