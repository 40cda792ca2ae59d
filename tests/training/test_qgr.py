"""QGR (GRMP-IQA Eq. 7-8): projection of the quality gradient against the semantic gradient."""
import math

import pytest
import torch
import torch.nn.functional as F

from perceptiq.backbones import create_backbone
from perceptiq.models.grmp import GRMPModel, grmp_quality_loss
from perceptiq.training.qgr import (
    all_reduce_mean,
    flatten_grads,
    qgr_step,
    quality_gradient_regularization,
    semantic_kl_loss,
)


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def test_hand_computation_in_two_dimensions():
    # G_qua = (3, 1), G_sem = (1, 0): dot = 3, |G_sem|^2 = 1
    for lam, expected in [(1.0, (0.0, 1.0)), (0.5, (1.5, 1.0)), (5.0, (-12.0, 1.0))]:
        (out,), info = quality_gradient_regularization([t(3, 1)], [t(1, 0)], lam)
        torch.testing.assert_close(out, t(*expected))
        assert info["projected"] and info["dot"] == pytest.approx(3.0)
        assert info["cos"] == pytest.approx(3 / math.sqrt(10))
        assert info["angle_deg"] == pytest.approx(math.degrees(math.acos(3 / math.sqrt(10))))


# Two tensors, worked by hand. G_qua = ([3, 4], [1]), G_sem = ([1, 0], [2]).
#   whole vector: dot = 3*1 + 4*0 + 1*2 = 5, |G_sem|^2 = 1 + 4 = 5, coefficient lam * 5 / 5 = lam
#   per tensor:   t1: dot 3, |s1|^2 1 -> coefficient 3 lam;  t2: dot 2, |s2|^2 4 -> coefficient lam / 2
@pytest.mark.parametrize("lam, whole, per_tensor", [
    (1.0, ([2.0, 4.0], [-1.0]), ([0.0, 4.0], [0.0])),
    (5.0, ([-2.0, 4.0], [-9.0]), ([-12.0, 4.0], [-4.0])),
])
def test_whole_vector_and_per_tensor_projection_by_hand(lam, whole, per_tensor):
    g_qua, g_sem = [t(3, 4), t(1)], [t(1, 0), t(2)]
    for granularity, expected in (("whole", whole), ("per-tensor", per_tensor)):
        out, info = quality_gradient_regularization(g_qua, g_sem, lam, granularity)
        for got, want in zip(out, expected):
            torch.testing.assert_close(got, t(*want))
        assert info["granularity"] == granularity and info["projected"]
        assert info["dot"] == pytest.approx(5.0)                      # the angle is always the whole one
        assert info["angle_deg"] == pytest.approx(math.degrees(math.acos(5 / (math.sqrt(26) * math.sqrt(5)))))
    assert info["projected_tensors"] == 2


def test_per_tensor_projection_leaves_tensors_with_a_non_positive_dot_or_zero_g_sem_alone():
    # G_qua = ([3, 4], [-1], [7]), G_sem = ([1, 0], [2], [0]), lam 1, by hand:
    #   whole: dot = 3 - 2 + 0 = 1 > 0, |G_sem|^2 = 5, coefficient 0.2 -> ([2.8, 4], [-1.4], [7])
    #   per tensor: t1 dot 3 > 0 -> [0, 4]; t2 dot -2 -> unchanged [-1]; t3 G_sem zero -> unchanged [7]
    g_qua, g_sem = [t(3, 4), t(-1), t(7)], [t(1, 0), t(2), t(0)]
    out, info = quality_gradient_regularization(g_qua, g_sem, 1.0, "whole")
    for got, want in zip(out, ([2.8, 4.0], [-1.4], [7.0])):
        torch.testing.assert_close(got, t(*want))
    out, info = quality_gradient_regularization(g_qua, g_sem, 1.0, "per-tensor")
    for got, want in zip(out, ([0.0, 4.0], [-1.0], [7.0])):
        torch.testing.assert_close(got, t(*want))
    assert info["projected_tensors"] == 1
    with pytest.raises(ValueError, match="granularity 'layer'"):
        quality_gradient_regularization(g_qua, g_sem, 1.0, "layer")


def test_not_positive_dot_leaves_the_gradient_unchanged():
    for g_qua, g_sem in [(t(-1, 2), t(1, 0)),        # obtuse: dot = -1
                         (t(3, 2), t(-1, 1.5))]:     # exactly orthogonal: dot = 0
        (out,), info = quality_gradient_regularization([g_qua], [g_sem], 5.0)
        torch.testing.assert_close(out, g_qua)
        assert not info["projected"] and info["dot"] <= 0
        assert info["angle_deg"] >= 90 - 1e-9


def test_lambda_one_makes_the_update_orthogonal_to_g_sem_over_all_tensors():
    gen = torch.Generator().manual_seed(0)
    g_sem = [torch.randn(3, 4, generator=gen), torch.randn(5, generator=gen)]
    noise = [torch.randn(3, 4, generator=gen), torch.randn(5, generator=gen)]
    g_qua = [s + 0.3 * n for s, n in zip(g_sem, noise)]                 # positive dot by construction
    out, info = quality_gradient_regularization(g_qua, g_sem, 1.0)
    assert info["projected"]
    assert float(flatten_grads(out) @ flatten_grads(g_sem)) == pytest.approx(0.0, abs=1e-5)
    # the list version is the flattened-vector formula
    q, s = flatten_grads(g_qua), flatten_grads(g_sem)
    torch.testing.assert_close(flatten_grads(out), q - (q @ s) / (s @ s) * s)
    assert [o.shape for o in out] == [(3, 4), (5,)]


def test_lambda_zero_is_identity_and_still_logs_the_angle():
    g_qua, g_sem = [t(1, 1)], [t(1, 0)]
    (out,), info = quality_gradient_regularization(g_qua, g_sem, 0.0)
    torch.testing.assert_close(out, g_qua[0])
    assert not info["projected"]
    assert info["angle_deg"] == pytest.approx(45.0)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="lam must be"):
        quality_gradient_regularization([t(1)], [t(1)], -1.0)
    with pytest.raises(ValueError, match=r"gradient 0 has shape \(2,\) in G_qua and \(3,\)"):
        quality_gradient_regularization([t(1, 2)], [t(1, 2, 3)], 1.0)
    with pytest.raises(ValueError, match="G_qua has 2 tensors, G_sem 1"):
        quality_gradient_regularization([t(1), t(2)], [t(1)], 1.0)
    (out,), info = quality_gradient_regularization([t(1, 2)], [t(0, 0)], 1.0)
    torch.testing.assert_close(out, t(1, 2))
    assert math.isnan(info["angle_deg"])


def test_per_rank_projection_differs_from_global_projection():
    # two ranks whose semantic gradients point differently: QGR of the mean != mean of QGRs
    rank_qua, rank_sem = [t(2, 0), t(0, 2)], [t(1, 1), t(1, -1)]
    per_rank = [quality_gradient_regularization([q], [s], 1.0)[0][0] for q, s in zip(rank_qua, rank_sem)]
    (global_,), _ = quality_gradient_regularization([t(1, 1)], [t(1, 0)], 1.0)
    torch.testing.assert_close(global_, t(0, 1))
    torch.testing.assert_close((per_rank[0] + per_rank[1]) / 2, t(0.5, 0.5))   # rank 2: dot -2 -> unchanged


@pytest.fixture(scope="module")
def model():
    grmp = GRMPModel(create_backbone("test-tiny", "random"), n_visual_tokens=2)
    grmp.set_trainable("prompts+last1")
    return grmp


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(4)
    return torch.randn(3, 3, 224, 224, generator=gen), t(0.1, 0.6, 0.9)


def test_qgr_step_matches_a_manual_two_loss_computation(model, batch):
    pixels, targets = batch
    params = [p for p in model.parameters() if p.requires_grad]
    loss_qua = grmp_quality_loss(model(pixels).scores, targets)
    g_qua = torch.autograd.grad(loss_qua, params, allow_unused=True, materialize_grads=True)
    p_sem = model.frozen_semantic_probabilities(pixels)
    p_qua = model.semantic_probabilities(pixels)
    loss_sem = (p_sem * (p_sem.log() - p_qua.log())).sum(-1).mean()        # Eq. 7
    g_sem = torch.autograd.grad(loss_sem, params, allow_unused=True, materialize_grads=True)
    expected, expected_info = quality_gradient_regularization(list(g_qua), list(g_sem), 5.0)

    info = qgr_step(model, pixels, targets, 5.0)
    for parameter, gradient in zip(params, expected):
        torch.testing.assert_close(parameter.grad, gradient, atol=1e-6, rtol=1e-4)
    assert info["quality_loss"] == pytest.approx(loss_qua.item(), rel=1e-5)
    assert info["kl_loss"] == pytest.approx(loss_sem.item(), rel=1e-4, abs=1e-7)
    assert info["angle_deg"] == pytest.approx(expected_info["angle_deg"], abs=1e-3)
    # the semantic prompts are fixed text, so Eq. 7 does not reach the text context
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert float(g_sem[names.index("text_context.ctx")].abs().sum()) == 0.0


def test_reduce_fn_runs_before_projection(model, batch):
    pixels, targets = batch
    params = [p for p in model.parameters() if p.requires_grad]
    captured = []
    qgr_step(model, pixels, targets, 1.0, reduce_fn=lambda grads: captured.append(grads) or grads)
    local_qua, local_sem = captured
    gen = torch.Generator().manual_seed(9)
    d = [torch.randn(g.shape, generator=gen) * 1e-2 for g in local_qua]
    e = [x + 0.5e-2 * torch.randn(x.shape, generator=gen) for x in d]          # d . e > 0
    other_qua = [2 * x - q for x, q in zip(d, local_qua)]                          # the other rank's
    other_sem = [2 * x - s for x, s in zip(e, local_sem)]
    others = iter([other_qua, other_sem])

    def mean_with_other_rank(grads):
        return [(g + o) / 2 for g, o in zip(grads, next(others))]

    info = qgr_step(model, pixels, targets, 1.0, reduce_fn=mean_with_other_rank)
    global_expected, _ = quality_gradient_regularization(d, e, 1.0)                # global = (d, e)
    assert info["projected"]
    for parameter, gradient in zip(params, global_expected):
        torch.testing.assert_close(parameter.grad, gradient, atol=1e-7, rtol=1e-4)
    rank_a, _ = quality_gradient_regularization(local_qua, local_sem, 1.0)
    rank_b, _ = quality_gradient_regularization(other_qua, other_sem, 1.0)
    per_rank = flatten_grads([(a + b) / 2 for a, b in zip(rank_a, rank_b)])
    assert not torch.allclose(per_rank, flatten_grads(global_expected), atol=1e-6)


def test_semantic_kl_loss_is_eq7():
    p_sem = torch.softmax(torch.randn(2, 9, generator=torch.Generator().manual_seed(0)), -1)
    p_qua = torch.softmax(torch.randn(2, 9, generator=torch.Generator().manual_seed(1)), -1)
    expected = (p_sem * (p_sem / p_qua).log()).sum(-1).mean()
    torch.testing.assert_close(semantic_kl_loss(p_sem, p_qua.log()), expected)
    with pytest.raises(ValueError, match="same shape"):
        semantic_kl_loss(p_sem, p_qua[:, :3].log())


def test_all_reduce_mean_on_a_single_process_group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        grads = [torch.arange(6.0).view(2, 3), torch.tensor([7.0])]
        reduced = all_reduce_mean()(grads)
        assert [r.shape for r in reduced] == [(2, 3), (1,)]
        torch.testing.assert_close(flatten_grads(reduced), t(0, 1, 2, 3, 4, 5, 7))
    finally:
        dist.destroy_process_group()


def test_the_trainer_projects_per_tensor_when_the_recipe_says_so(tmp_path):
    from perceptiq.training import TrainConfig, Trainer, TrainItem

    from ..conftest import textured_image

    items = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        textured_image(i, (32, 32)).save(path)
        items.append(TrainItem(str(path), i / 3, "toy"))
    model = GRMPModel(create_backbone("test-tiny", "random"), n_visual_tokens=1)
    model.set_trainable("prompts+last1")
    config = TrainConfig(epochs=1, batch_size=4, optimizer="sgd", lr=1e-3, loss="bce", step="qgr",
                         qgr_granularity="per-tensor", hflip=False)
    step = Trainer(config).fit(model, items).steps[0]
    assert step["granularity"] == "per-tensor" and "projected_tensors" in step
    with pytest.raises(ValueError, match="qgr_granularity"):
        TrainConfig(qgr_granularity="layer")
