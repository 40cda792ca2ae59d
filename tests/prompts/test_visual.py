"""DeepVisualPrompts: prompt tokens inserted before every vision block, outputs dropped (Eq. 1)."""
import math

import pytest
import torch

from perceptiq.backbones import create_backbone
from perceptiq.prompts import DeepVisualPrompts


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("test-tiny", "random")


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def vpt_placement_reference(backbone, prompts, pixels):
    """Eq. 1 written out the VPT way: [CLS, P^l, patches] into block l, prompt outputs dropped."""
    visual = backbone.clip.visual
    x = visual._embeds(pixels)                      # [B, 1+N, W], after ln_pre
    n = prompts.shape[1]
    for layer, block in enumerate(backbone.visual_blocks):
        p = prompts[layer].unsqueeze(0).expand(x.shape[0], -1, -1)
        y = block(torch.cat([x[:, :1], p, x[:, 1:]], dim=1))
        x = torch.cat([y[:, :1], y[:, 1 + n:]], dim=1)
    pooled, _ = visual._pool(x)
    return torch.nn.functional.normalize(pooled @ visual.proj, dim=-1)


def test_zero_tokens_equal_plain_clip(backbone, pixels):
    prompts = DeepVisualPrompts(backbone, n_tokens=0)
    torch.testing.assert_close(prompts.encode_image(pixels), backbone.encode_image(pixels))


def test_prompted_features_match_the_vpt_reference(backbone, pixels):
    prompts = DeepVisualPrompts(backbone, n_tokens=3, seed=5)
    features = prompts.encode_image(pixels)
    reference = vpt_placement_reference(backbone, prompts.prompts, pixels)
    torch.testing.assert_close(features, reference, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(features, backbone.encode_image(pixels), atol=1e-4)


def test_sequence_length_returns_to_one_plus_patches_at_every_block(backbone, pixels):
    prompts = DeepVisualPrompts(backbone, n_tokens=3)
    block_inputs, layer_outputs = [], []
    handles = [block.register_forward_pre_hook(lambda m, a: block_inputs.append(a[0].shape[1]))
               for block in backbone.visual_blocks]
    run_block = prompts._run_block

    def spy(layer, block, x):
        y = run_block(layer, block, x)
        layer_outputs.append(y.shape[1])
        return y

    prompts._run_block = spy
    try:
        prompts.encode_image(pixels)
    finally:
        for handle in handles:
            handle.remove()
    n_patches = (224 // 32) ** 2
    assert block_inputs == [1 + n_patches + 3] * 4       # the block sees [CLS, patches, P^l]
    assert layer_outputs == [1 + n_patches] * 4          # and passes on [CLS, patches] only


def test_backbone_stays_plain_clip(backbone, pixels):
    plain = backbone.encode_image(pixels)
    keys = list(backbone.state_dict())
    prompts = DeepVisualPrompts(backbone, n_tokens=2)
    prompts.encode_image(pixels)
    torch.testing.assert_close(backbone.encode_image(pixels), plain)
    assert list(backbone.state_dict()) == keys
    assert list(prompts.state_dict()) == ["prompts"]


def test_gradient_checkpointing_gives_the_same_gradients(pixels):
    backbone = create_backbone("test-tiny", "random")
    prompts = DeepVisualPrompts(backbone, n_tokens=2)
    prompts.encode_image(pixels).square().sum().backward()
    expected = prompts.prompts.grad.clone()
    prompts.prompts.grad = None
    backbone.clip.set_grad_checkpointing(True)
    prompts.encode_image(pixels).square().sum().backward()
    torch.testing.assert_close(prompts.prompts.grad, expected)


def test_every_layer_prompt_gets_a_gradient(backbone, pixels):
    prompts = DeepVisualPrompts(backbone, n_tokens=2)
    prompts.encode_image(pixels).sum().backward()
    per_layer = prompts.prompts.grad.abs().sum(dim=(1, 2))
    assert per_layer.shape == (4,) and bool((per_layer > 0).all())


def test_vpt_uniform_init(backbone):
    prompts = DeepVisualPrompts(backbone, n_tokens=5, seed=0)
    bound = math.sqrt(6.0 / (3 * 32 * 32 + 64))
    assert prompts.prompts.shape == (4, 5, 64)
    assert prompts.init_bound == pytest.approx(bound)
    assert float(prompts.prompts.detach().abs().max()) <= bound
    assert float(prompts.prompts.detach().abs().max()) > 0.5 * bound
    again = DeepVisualPrompts(backbone, n_tokens=5, seed=0)
    torch.testing.assert_close(prompts.prompts, again.prompts)


def test_negative_token_count_is_refused(backbone):
    with pytest.raises(ValueError, match="n_tokens"):
        DeepVisualPrompts(backbone, n_tokens=-1)
