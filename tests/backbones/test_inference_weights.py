"""bf16 weight copies for inference (backbones/inference_weights.py): autocast's numerics without its
per-call weight casts, only for bf16 inference, never in training, at half the covered weights' fp32 size."""
import contextlib
import copy

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

import perceptiq
from perceptiq.backbones import create_backbone
from perceptiq.backbones.inference_weights import (
    Bf16CopyAttention,
    Bf16CopyLinear,
    existing_weight_copies,
    weight_copies_for,
)

from ..rounding import assert_as_accurate

BF16 = torch.bfloat16


def _model(precision="bf16"):
    return perceptiq.load_model("zero-shot", backbone="test-tiny", weights="random", device="cpu",
                                precision=precision)


def _pixels(n=4, seed=0):
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def _plain_autocast(module, pixels):
    """What ``Assessor.predict`` ran before the copies: the model under bf16 autocast, fp32 weights."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=BF16):
        return module(pixels).scores.float()


def _covered(tower):
    return [m for m in tower.modules() if isinstance(m, (Bf16CopyLinear, Bf16CopyAttention))]


def _longest_reduction(tower) -> int:
    """The longest dot product of the tower's GEMMs (the MLP's second layer: its hidden width)."""
    return max(m.in_features for m in tower.modules() if isinstance(m, nn.Linear))


def _gemms_on_path(tower) -> int:
    """GEMMs whose bf16-rounded outputs feed the image features: q/k/v, out, fc, proj per block, + ``proj``."""
    return 4 * len(tower.transformer.resblocks) + 1


def assert_like_autocast(candidate, baseline, exact, tower, what):
    """``candidate`` (copies) equals ``baseline`` (plain autocast) as two bf16 computations that differ
    only in how their kernels order sums. Both round the same weights and inputs to bf16 (round to
    nearest even; the copies are that rounding done earlier) and accumulate in fp32, then round each
    output to bf16 once. So per GEMM the outputs can differ by the fp32 accumulation order, at most
    ~eps(fp32) * sqrt(K) relative for a reduction of length K, and by that flipping an output's bf16
    rounding, at most one bf16 ulp, eps(bf16) = 2^-7 relative (8 bits of significand). To first order
    these add over the GEMMs on the path:

        |candidate - baseline| <= G * (eps(bf16) + eps(fp32) * sqrt(K)) * |baseline|   (L2 norms)

    with G the GEMMs on the path and K the longest reduction. Nothing here is measured on this machine;
    a copy of the wrong weights is an error of order |baseline|. Then the project's rule for two orders
    of one computation (tests/rounding.py): against the fp64 model, the candidate is as accurate as the
    baseline (the floor for GEMMs accumulating in fp32)."""
    reduction = _longest_reduction(tower)
    per_gemm = torch.finfo(BF16).eps + torch.finfo(torch.float32).eps * reduction ** 0.5
    bound = _gemms_on_path(tower) * per_gemm * float(baseline.double().norm())
    difference = float((candidate.double() - baseline.double()).norm())
    assert difference <= bound, f"{what}: copies differ from autocast by {difference:.3g} > {bound:.3g}"
    assert_as_accurate(candidate, baseline, exact, reduction_length=reduction, dtype=torch.float32, what=what)


def test_scores_and_features_equal_the_autocast_path_within_bf16_rounding():
    model = _model()
    pixels = _pixels()
    tower = model.image_tower
    exact_module = copy.deepcopy(model.module).double()
    with torch.inference_mode():
        exact_scores = exact_module(pixels.double()).scores
        exact_features = exact_module.backbone.encode_image(pixels.double())
    baseline_scores = _plain_autocast(model.module, pixels)
    with torch.inference_mode(), torch.autocast("cpu", dtype=BF16):
        baseline_features = model.module.backbone.encode_image(pixels).float()
    candidate_scores = model.predict(pixels).scores
    with torch.inference_mode(), torch.autocast("cpu", dtype=BF16), weight_copies_for(tower).active():
        candidate_features = model.module.backbone.encode_image(pixels).float()
    assert len(existing_weight_copies(tower)._entries) == len(_covered(tower)) > 0
    # the comparison is in bf16's regime: autocast's error is far above fp32 rounding
    assert (baseline_features.double() - exact_features).norm() > 1e3 * torch.finfo(torch.float32).eps
    assert_like_autocast(candidate_features, baseline_features, exact_features, tower, "image features")
    assert_as_accurate(candidate_scores, baseline_scores, exact_scores,
                       reduction_length=_longest_reduction(tower), dtype=torch.float32, what="scores")


def _weight_casts(fn, shapes):
    """How many fp32 -> lower-precision casts of a tensor of one of ``shapes`` ``fn`` makes, and the
    names of the aten ops it ran."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    events = list(prof.events())
    casts = [e for e in events if e.name == "aten::_to_copy" and e.input_shapes
             and tuple(e.input_shapes[0]) in shapes]
    return len(casts), [e.name for e in events]


def test_copies_remove_the_per_call_weight_casts_and_attention_stays_fused():
    model = _model()
    pixels = _pixels(3)
    tower = model.image_tower
    model.predict(pixels)                                                  # copies made on the first call
    shapes = {tuple(p.shape) for p in tower.parameters() if p.dim() == 2}
    plain, _ = _weight_casts(lambda: _plain_autocast(model.module, pixels), shapes)
    with_copies, names = _weight_casts(lambda: model.predict(pixels), shapes)
    covered = sum(2 if isinstance(m, nn.MultiheadAttention) else 1 for m in _covered(tower))
    blocks = len(tower.transformer.resblocks)
    assert covered == 4 * blocks                                           # q/k/v, out, fc, proj per block
    # left: ``proj``, and the positional embedding [L, W], which open_clip casts to the stream's dtype:
    # a no-op in fp32, one small cast per call on the bf16 residual stream of inference
    assert plain >= covered and with_copies == plain - covered + 1
    assert names.count("aten::_native_multi_head_attention") == blocks    # torch's fused kernel, per block
    assert model.describe()["precision"] == "bf16"


def test_no_copies_for_fp32_and_none_of_the_text_tower():
    model = _model("fp32")
    model.predict(_pixels(2))
    assert existing_weight_copies(model.image_tower) is None
    assert not _covered(model.module)                                      # no layer was even re-classed
    bf16 = _model()
    bf16.predict(_pixels(2))
    text_tower = bf16.module.backbone.clip.transformer
    assert not _covered(text_tower) and _covered(bf16.image_tower)


def test_memory_half_the_covered_fp32_weights_masters_kept_made_once():
    model = _model()
    tower = model.image_tower
    masters = {name: (p.data_ptr(), p.dtype) for name, p in tower.named_parameters()}
    keys = list(model.module.state_dict())
    model.predict(_pixels(2))
    copies = existing_weight_copies(tower)
    covered_fp32 = sum(p.numel() * 4 for m in _covered(tower) for p in m.parameters())
    assert copies.nbytes() == covered_fp32 // 2
    first = [t.data_ptr() for t in copies.tensors()]
    model.predict(_pixels(2, seed=1))
    assert copies.refresh() == 0 and [t.data_ptr() for t in copies.tensors()] == first   # not remade
    assert {name: (p.data_ptr(), p.dtype) for name, p in tower.named_parameters()} == masters
    assert list(model.module.state_dict()) == keys                        # nothing new saved
    assert existing_weight_copies(copy.deepcopy(tower)) is None           # nor copied with the module
    copies.release()
    assert copies.nbytes() == 0


def test_copies_follow_changed_weights():
    model = _model()
    pixels = _pixels(3)
    before = model.predict(pixels).scores
    other = create_backbone("test-tiny", "random", seed=1).clip.visual
    model.image_tower.load_state_dict(other.state_dict())                 # in place: versions bumped
    after = model.predict(pixels).scores
    with torch.inference_mode():
        exact = copy.deepcopy(model.module).double()(pixels.double()).scores
    assert_as_accurate(after, _plain_autocast(model.module, pixels), exact,
                       reduction_length=_longest_reduction(model.image_tower), dtype=torch.float32,
                       what="scores")
    assert (after.double() - exact).norm() < 0.1 * (before.double() - exact).norm()   # not the old weights
    model.module.to(torch.float64)                                      # masters no longer fp32: no copies
    model.predict(pixels.double())
    assert existing_weight_copies(model.image_tower).nbytes() == 0


def test_a_weight_changed_inside_an_active_context_is_never_served_stale():
    model = _model()
    pixels = _pixels(2)
    tower = model.image_tower
    copies = weight_copies_for(tower)
    other = create_backbone("test-tiny", "random", seed=1).clip.visual
    with torch.inference_mode(), torch.autocast("cpu", dtype=BF16):
        with copies.active():
            tower.load_state_dict(other.state_dict())                      # after the copies were made
            served = tower(pixels).float()
        plain = tower(pixels).float()
    torch.testing.assert_close(served, plain, rtol=0, atol=0)             # the same path: autocast


@pytest.mark.parametrize("mode", ["train", "grad_input"])
def test_training_and_gradient_paths_run_autocast_over_the_fp32_masters(mode):
    """In training mode, or in eval with a gradient to compute (prompt tuning: the input needs one), the
    layers ignore active copies: the gradients equal those of plain autocast bit for bit."""
    model = _model()
    model.predict(_pixels(2))
    tower = model.image_tower
    copies = existing_weight_copies(tower)
    backbone = model.module.backbone
    backbone.train(mode == "train")
    tower.requires_grad_(mode == "train")

    def gradients(active: bool):
        for p in tower.parameters():
            p.grad = None
        pixels = _pixels(2, seed=3).requires_grad_(mode == "grad_input")
        with torch.autocast("cpu", dtype=BF16), (copies.active() if active else contextlib.nullcontext()):
            features = backbone.encode_image(pixels)
        features.float().square().sum().backward()
        if mode == "train":
            return {name: p.grad.clone() for name, p in tower.named_parameters() if p.grad is not None}
        return {"pixels": pixels.grad.clone()}

    plain, with_copies = gradients(False), gradients(True)
    assert plain and plain.keys() == with_copies.keys()
    for name in plain:
        torch.testing.assert_close(with_copies[name], plain[name], rtol=0, atol=0, msg=name)
    assert all(p.dtype == torch.float32 for p in tower.parameters())
    backbone.eval()


def test_a_region_with_autocast_off_keeps_fp32_weights():
    linear = nn.Linear(8, 4)
    tower = nn.Sequential(linear)
    copies = weight_copies_for(tower)
    x = torch.randn(3, 8)
    with torch.inference_mode(), copies.active():
        with torch.autocast("cpu", dtype=BF16):
            assert tower(x).dtype == BF16
        out = tower(x)                                                     # no autocast: fp32 master
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x @ linear.weight.t() + linear.bias, rtol=0, atol=0)
