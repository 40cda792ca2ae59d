"""MixtureOfAssessmentExperts (Gamma Eq. 2-4) and its insertion into CLIP blocks (Eq. 5)."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from open_clip.transformer import QuickGELU
from torch import nn

from perceptiq.backbones import create_backbone
from perceptiq.experts import (
    MixtureOfAssessmentExperts,
    Router,
    experts_bypassed,
    find_moae,
    insert_moae,
    routing_recorded,
)

WIDTH, HIDDEN = 16, 64


def make_ffn(activation: nn.Module | None = None, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("c_fc", nn.Linear(WIDTH, HIDDEN)), ("gelu", activation or nn.GELU()), ("c_proj", nn.Linear(HIDDEN, WIDTH)),
    ]))


def perturb_experts(moae: MixtureOfAssessmentExperts, seed: int = 1) -> None:
    """Make the adaptive experts differ from each other and from the shared FFN (as after training)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (moae.fc_weight, moae.fc_bias, moae.proj_weight, moae.proj_bias):
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
        moae.router.weight.normal_(0.0, 0.5, generator=gen)
        moae.sigma.fill_(0.7)


def loop_reference(moae: MixtureOfAssessmentExperts, x: torch.Tensor, activation, weights=None) -> torch.Tensor:
    """Eq. 2-4 written naively: one expert at a time, each as Linear -> act -> Linear."""
    gates = torch.softmax(x @ moae.router.weight.t(), dim=-1) if weights is None else weights
    y_adaptive = torch.zeros_like(x)
    for i in range(moae.n_experts):
        hidden = activation(x @ moae.fc_weight[i] + moae.fc_bias[i])
        y_adaptive = y_adaptive + gates[..., i:i + 1] * (hidden @ moae.proj_weight[i] + moae.proj_bias[i])
    return moae.shared(x) + moae.sigma * y_adaptive


@pytest.mark.parametrize("activation", [nn.GELU(), QuickGELU()], ids=["gelu", "quickgelu"])
def test_batched_experts_equal_a_per_expert_loop(activation):
    moae = MixtureOfAssessmentExperts(make_ffn(activation), n_experts=3)
    perturb_experts(moae)
    x = torch.randn(2, 7, WIDTH)
    torch.testing.assert_close(moae(x), loop_reference(moae, x, activation), rtol=1e-5, atol=1e-5)


def test_experts_start_as_copies_of_the_ffn_and_reuse_its_activation():
    ffn = make_ffn(QuickGELU())
    moae = MixtureOfAssessmentExperts(ffn, n_experts=4)
    assert moae.activation is ffn.gelu
    for i in range(4):
        torch.testing.assert_close(moae.fc_weight[i], ffn.c_fc.weight.t())
        torch.testing.assert_close(moae.proj_weight[i], ffn.c_proj.weight.t())
        torch.testing.assert_close(moae.fc_bias[i], ffn.c_fc.bias)
    # copies, not views: training an expert leaves the shared FFN alone
    with torch.no_grad():
        moae.fc_weight.add_(1.0)
    assert not torch.allclose(moae.fc_weight[0], ffn.c_fc.weight.t())


def test_zero_sigma_gives_the_shared_ffn_output():
    moae = MixtureOfAssessmentExperts(make_ffn(), n_experts=3)
    assert moae.sigma.item() == 0.0 and isinstance(moae.sigma, nn.Parameter)
    x = torch.randn(3, 5, WIDTH)
    torch.testing.assert_close(moae(x), moae.shared(x))


def test_without_sigma_is_a_plain_sum_so_it_starts_at_twice_the_ffn():
    ffn = make_ffn()
    moae = MixtureOfAssessmentExperts(ffn, n_experts=3, use_sigma=False)
    assert "sigma" not in dict(moae.named_parameters()) and moae.sigma.item() == 1.0
    x = torch.randn(2, 4, WIDTH)
    # identical experts and router weights summing to one: sum_i G_i E(x) = E(x)
    torch.testing.assert_close(moae(x), 2 * ffn(x), rtol=1e-5, atol=1e-5)


def test_zero_experts_is_the_plain_frozen_ffn():
    ffn = make_ffn()
    moae = MixtureOfAssessmentExperts(ffn, n_experts=0)
    assert [n for n, p in moae.named_parameters() if p.requires_grad] == []
    x = torch.randn(2, 4, WIDTH)
    torch.testing.assert_close(moae(x), ffn(x))


def test_shared_expert_frozen_by_default_trainable_on_request():
    frozen = MixtureOfAssessmentExperts(make_ffn(), 2)
    assert not any(p.requires_grad for p in frozen.shared.parameters())
    assert {n for n, p in frozen.named_parameters() if p.requires_grad} == {
        "fc_weight", "fc_bias", "proj_weight", "proj_bias", "router.weight", "sigma"}
    unfrozen = MixtureOfAssessmentExperts(make_ffn(), 2, freeze_shared=False)
    assert all(p.requires_grad for p in unfrozen.shared.parameters())


def test_router_probabilities_sum_to_one():
    router = Router(WIDTH, 5, init_std=0.5)
    probs = router(torch.randn(4, 9, WIDTH))
    assert probs.shape == (4, 9, 5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4, 9))
    assert (probs > 0).all()
    with pytest.raises(ValueError, match="at least one expert"):
        Router(WIDTH, 0)


@pytest.mark.parametrize("renormalize", [False, True])
def test_force_expert_keeps_one_expert(renormalize):
    moae = MixtureOfAssessmentExperts(make_ffn(), 3)
    perturb_experts(moae)
    x = torch.randn(2, 6, WIDTH)
    probs = moae.router(x)
    moae.set_forced_expert(1, renormalize=renormalize)
    weights = torch.zeros_like(probs)
    weights[..., 1] = 1.0 if renormalize else probs[..., 1]
    torch.testing.assert_close(moae(x), loop_reference(moae, x, nn.GELU(), weights), rtol=1e-5, atol=1e-5)
    moae.set_forced_expert(None)
    torch.testing.assert_close(moae(x), loop_reference(moae, x, nn.GELU()), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="out of range for 3"):
        moae.set_forced_expert(3)


def test_gradients_reach_every_expert_and_the_router_once_sigma_is_nonzero():
    moae = MixtureOfAssessmentExperts(make_ffn(), 3)
    x = torch.randn(2, 6, WIDTH)
    moae(x).pow(2).sum().backward()
    # step one at sigma = 0: the expert and router gradients carry a factor sigma, so only sigma learns
    assert moae.sigma.grad.abs() > 0
    for p in (moae.fc_weight, moae.proj_weight, moae.router.weight):
        assert torch.count_nonzero(p.grad) == 0
    moae.zero_grad()
    with torch.no_grad():
        moae.sigma.fill_(0.5)
    moae(x).pow(2).sum().backward()
    for i in range(3):
        assert moae.fc_weight.grad[i].abs().sum() > 0 and moae.proj_weight.grad[i].abs().sum() > 0
    assert moae.router.weight.grad.abs().sum() > 0


def test_zero_router_init_never_breaks_the_symmetry_of_copied_experts():
    """Why the router starts small-random. While the experts are identical, the router's gradient is
    zero (it weighs differences between expert outputs). With W = 0 the experts also get identical
    gradients, so they stay copies and the router never learns; a random W gives each expert its own
    gradient, the experts diverge after one step, and from then on the router learns too."""
    x = torch.randn(2, 6, WIDTH)
    router_grad = {}
    for init_std, symmetric in ((0.0, True), (0.3, False)):
        moae = MixtureOfAssessmentExperts(make_ffn(), 3, sigma_init=0.5, router_init_std=init_std)
        optimizer = torch.optim.SGD(moae.parameters(), lr=0.1)
        moae(x).pow(2).sum().backward()
        assert moae.router.weight.grad.abs().max() < 1e-5  # identical experts: nothing to route between
        assert torch.allclose(moae.fc_weight.grad[0], moae.fc_weight.grad[1]) is symmetric
        optimizer.step()
        optimizer.zero_grad()
        moae(x).pow(2).sum().backward()
        assert torch.allclose(moae.fc_weight[0], moae.fc_weight[1]) is symmetric
        router_grad[init_std] = moae.router.weight.grad.abs().max().item()
    assert router_grad[0.0] < 1e-6  # float round-off only
    assert router_grad[0.3] > 100 * router_grad[0.0]


def test_mean_router_activation_averages_tokens_in_either_layout():
    moae = MixtureOfAssessmentExperts(make_ffn(), 3, router_init_std=0.5)
    x = torch.randn(2, 5, WIDTH)  # [B, L, d]
    moae(x)
    assert moae.last_router_probs is None  # recording is off by default
    moae.record_routing = True
    moae(x)
    expected = moae.router(x).mean(dim=1)
    torch.testing.assert_close(moae.mean_router_activation(), expected)
    moae.batch_first = False
    moae(x.transpose(0, 1))  # [L, B, d]
    torch.testing.assert_close(moae.mean_router_activation(), expected)


def test_a_module_that_is_not_an_open_clip_mlp_is_refused():
    with pytest.raises(ValueError, match="c_fc: Linear"):
        MixtureOfAssessmentExperts(nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 4)), 2)


# -- insertion into a backbone -----------------------------------------------------------------------------
@pytest.fixture
def tiny():
    return create_backbone("test-tiny", "random")


@pytest.fixture(scope="module")
def plain_features():
    backbone = create_backbone("test-tiny", "random")
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    tokens = backbone.tokenize(["bad image", "perfect image"])
    with torch.no_grad():
        return pixels, tokens, backbone.encode_image(pixels), backbone.encode_text(tokens)


def test_insert_replaces_the_last_k_blocks_of_both_towers(tiny):
    originals = [b.mlp for b in tiny.visual_blocks] + [b.mlp for b in tiny.text_blocks]
    modules = insert_moae(tiny, n_layers=2, n_experts=3)
    assert len(modules) == 4 and modules == find_moae(tiny)
    for blocks, kept in ((tiny.visual_blocks, originals[:4]), (tiny.text_blocks, originals[4:])):
        assert [type(b.mlp) is MixtureOfAssessmentExperts for b in blocks] == [False, False, True, True]
        assert blocks[3].mlp.shared is kept[3] and blocks[0].mlp is kept[0]
    with pytest.raises(ValueError, match="already holds"):
        insert_moae(tiny, n_layers=1)


def test_insert_checks_depth_and_towers(tiny):
    with pytest.raises(ValueError, match="outside 0..4"):
        insert_moae(tiny, n_layers=5)
    with pytest.raises(ValueError, match="unknown tower 'audio'"):
        insert_moae(tiny, towers=("audio",))
    assert insert_moae(tiny, n_layers=0) == []
    assert len(insert_moae(tiny, n_layers=3, towers=("visual",))) == 3 and find_moae(tiny, "text") == []


def test_inserted_moae_with_zero_sigma_keeps_clip_features(tiny, plain_features):
    pixels, tokens, image, text = plain_features
    insert_moae(tiny, n_layers=4, n_experts=3)
    with torch.no_grad():
        torch.testing.assert_close(tiny.encode_image(pixels), image, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(tiny.encode_text(tokens), text, rtol=1e-5, atol=1e-6)


def test_bypassing_experts_recovers_clip_features_whatever_sigma(tiny, plain_features):
    pixels, _, image, _ = plain_features
    modules = insert_moae(tiny, n_layers=2, n_experts=2)
    with torch.no_grad():
        for m in modules:
            m.sigma.fill_(1.0)
        assert not torch.allclose(tiny.encode_image(pixels), image, atol=1e-4)
        with experts_bypassed(modules):
            torch.testing.assert_close(tiny.encode_image(pixels), image, rtol=1e-5, atol=1e-6)
        with routing_recorded(modules[:1]):
            tiny.encode_image(pixels)
        # batch-first layout: [B, L, n] with L = 1 + 7*7 patch tokens of test-tiny
        assert modules[0].last_router_probs.shape == (2, 50, 2)
        assert modules[0].record_routing is False
