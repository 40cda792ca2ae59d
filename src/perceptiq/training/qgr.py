"""Quality-aware Gradient Regularization (QGR; GRMP-IQA section 3.4, Eq. 7-8).

During fine-tuning two gradients are taken over the same trainable parameters:

    G_qua = grad of the quality loss L_ce (Eq. 3)
    G_sem = grad of L_kl = sum_i p_sem(w_i|x) log(p_sem(w_i|x) / p_qua(w_i|x))        (Eq. 7)

where p_sem is the original CLIP's nine-class semantic distribution (fixed) and p_qua the tuned model's.
The update direction is (Eq. 8)

    G_qgr = G_qua - lam * (G_qua . G_sem / |G_sem|^2) * G_sem     if G_qua . G_sem > 0
    G_qgr = G_qua                                                 otherwise

lam = 1 removes the component of G_qua along G_sem; lam = 0 is plain fine-tuning (CoOp); the paper uses
lam = 5. By default (``granularity="whole"``, what the paper implies: one angle between G_qua and G_sem,
Fig. 4b) dot products and norms run over *all* parameters as one flattened vector; ``"per-tensor"``
applies Eq. 8 to each parameter tensor on its own (its own dot, norm and sign test).

Distributed training: QGR must see the global gradients, so ``qgr_step`` applies ``reduce_fn`` (e.g. an
all-reduce mean) to G_qua and to G_sem *before* projecting; run it on the unwrapped module (not a
``DistributedDataParallel`` wrapper, whose reducer only hooks ``.backward()``).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..backbones.autocast_policy import at_least_float32

GradientList = list[torch.Tensor]
ReduceFn = Callable[[GradientList], GradientList]


def flatten_grads(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate gradients into one 1-D vector (order kept)."""
    if any(g is None for g in grads):
        raise ValueError("flatten_grads: a gradient is None; materialise zeros for unused parameters")
    if not grads:
        return torch.zeros(0)
    return torch.cat([g.reshape(-1) for g in grads])


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of per-tensor dot products in float64 (no flattened copy of large gradients)."""
    total = torch.zeros((), dtype=torch.float64, device=a[0].device if a else "cpu")
    for x, y in zip(a, b):
        total = total + (x.double() * y.double()).sum()
    return total


def _check_pair(g_qua: Sequence[torch.Tensor], g_sem: Sequence[torch.Tensor]) -> None:
    if len(g_qua) != len(g_sem):
        raise ValueError(f"QGR: G_qua has {len(g_qua)} tensors, G_sem {len(g_sem)}; they must match")
    for index, (q, s) in enumerate(zip(g_qua, g_sem)):
        if q is None or s is None:
            raise ValueError(f"QGR: gradient {index} is None; materialise zeros for unused parameters")
        if q.shape != s.shape:
            raise ValueError(f"QGR: gradient {index} has shape {tuple(q.shape)} in G_qua and "
                             f"{tuple(s.shape)} in G_sem")


GRANULARITIES = ("whole", "per-tensor")


def quality_gradient_regularization(g_qua: Sequence[torch.Tensor], g_sem: Sequence[torch.Tensor],
                                    lam: float, granularity: str = "whole") -> tuple[GradientList, dict]:
    """Eq. 8 on gradient lists -> (G_qgr list, info).

    granularity: ``"whole"`` (default) treats all tensors as one vector G: one dot product, one sign
    test, one coefficient ``lam * (G_qua . G_sem) / |G_sem|^2`` for every tensor. ``"per-tensor"`` applies
    Eq. 8 to each tensor t separately: ``g_t - lam * (g_t . s_t) / |s_t|^2 * s_t`` where ``g_t . s_t > 0``,
    else ``g_t`` unchanged (also where ``s_t`` is zero).

    info: ``dot`` (G_qua . G_sem), ``cos`` and ``angle_deg`` between them (NaN when either is zero),
    ``norm_qua``, ``norm_sem``, ``projected`` (whether the projection was applied; per-tensor: to any
    tensor), ``lam``, ``granularity``; per-tensor adds ``projected_tensors`` (how many). The angle is always
    the whole-vector angle, reported for every lam, including 0 (Fig. 4b).
    """
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"QGR: lam must be a finite number >= 0, got {lam!r}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"QGR: granularity {granularity!r}: choose one of {', '.join(GRANULARITIES)}")
    _check_pair(g_qua, g_sem)
    dot = _dot(g_qua, g_sem)
    norm_qua = _dot(g_qua, g_qua).sqrt()
    sem_sq = _dot(g_sem, g_sem)
    norm_sem = sem_sq.sqrt()
    if float(norm_qua) > 0 and float(norm_sem) > 0:
        cos = float((dot / (norm_qua * norm_sem)).clamp(-1.0, 1.0))
        angle = math.degrees(math.acos(cos))
    else:
        cos = angle = float("nan")
    info = {"dot": float(dot), "cos": cos, "angle_deg": angle, "norm_qua": float(norm_qua),
            "norm_sem": float(norm_sem), "lam": float(lam), "granularity": granularity}
    if granularity == "per-tensor":
        result, n_projected = [], 0
        for q, s in zip(g_qua, g_sem):
            dot_t = (q.double() * s.double()).sum()
            if lam > 0 and float(dot_t) > 0:       # > 0 implies |s_t| > 0
                coefficient = lam * dot_t / (s.double() * s.double()).sum()
                result.append(q - coefficient.to(q.dtype) * s)
                n_projected += 1
            else:
                result.append(q.clone())
        info.update(projected=n_projected > 0, projected_tensors=n_projected)
        return result, info
    projected = bool(float(dot) > 0) and lam > 0
    if projected:
        coefficient = (lam * dot / sem_sq)
        result = [q - (coefficient.to(q.dtype) * s) for q, s in zip(g_qua, g_sem)]
    else:
        result = [q.clone() for q in g_qua]
    info["projected"] = projected
    return result, info


def semantic_kl_loss(p_sem: torch.Tensor, log_p_qua: torch.Tensor) -> torch.Tensor:
    """Eq. 7 averaged over the batch: KL(p_sem || p_qua) from p_sem [B,C] and log p_qua [B,C]."""
    if p_sem.shape != log_p_qua.shape:
        raise ValueError(f"semantic_kl_loss: p_sem {tuple(p_sem.shape)} and log p_qua "
                         f"{tuple(log_p_qua.shape)} must have the same shape")
    return F.kl_div(at_least_float32(log_p_qua), at_least_float32(p_sem), reduction="batchmean")


def qgr_step(model, pixels: torch.Tensor, targets: torch.Tensor, lam: float, *,
             params: Sequence[torch.nn.Parameter] | None = None, reduce_fn: ReduceFn | None = None,
             quality_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
             granularity: str = "whole") -> dict:
    """One QGR gradient computation; writes G_qgr into ``p.grad`` (overwriting) for an optimizer to step.

    model: a ``GRMPModel`` (anything with ``image_features``, ``quality_probability``,
        ``semantic_log_probabilities`` and ``frozen_semantic_probabilities``).
    pixels [B,3,S,S], targets [B] (MOS rescaled to [0, 1]).
    params: the shared trainable parameters (default: every parameter with ``requires_grad``). Parameters
        that one loss does not reach (e.g. the text context for Eq. 7, whose prompts are fixed) get a
        zero gradient from it.
    reduce_fn: applied to the G_qua list and to the G_sem list before projection (DDP: all-reduce mean).
    granularity: ``"whole"`` (one vector, the paper's reading) or ``"per-tensor"``; see
        ``quality_gradient_regularization``.
    Returns QGR's info plus ``quality_loss`` and ``kl_loss`` (floats).
    """
    if quality_loss is None:
        from ..models.grmp import grmp_quality_loss as quality_loss
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
    params = list(params)
    if not params:
        raise ValueError("qgr_step: no trainable parameters (call model.set_trainable first)")
    image_features = model.image_features(pixels)        # one forward shared by both losses
    p_high = model.quality_probability(image_features=image_features)
    loss_qua = quality_loss(p_high, targets)
    p_sem = model.frozen_semantic_probabilities(pixels)
    loss_sem = semantic_kl_loss(p_sem, model.semantic_log_probabilities(image_features=image_features))
    g_qua = list(torch.autograd.grad(loss_qua, params, retain_graph=True, allow_unused=True,
                                     materialize_grads=True))
    g_sem = list(torch.autograd.grad(loss_sem, params, allow_unused=True, materialize_grads=True))
    if reduce_fn is not None:
        g_qua, g_sem = list(reduce_fn(g_qua)), list(reduce_fn(g_sem))
    projected, info = quality_gradient_regularization(g_qua, g_sem, lam, granularity)
    for parameter, gradient in zip(params, projected):
        parameter.grad = gradient.to(parameter.dtype)
    info.update(quality_loss=float(loss_qua.detach()), kl_loss=float(loss_sem.detach()))
    return info


def all_reduce_mean(group=None) -> ReduceFn:
    """A ``reduce_fn`` that averages gradient lists over the ranks of a ``torch.distributed`` group."""
    import torch.distributed as dist

    def reduce(grads: GradientList) -> GradientList:
        world = dist.get_world_size(group)
        flat = flatten_grads(grads)
        dist.all_reduce(flat, group=group)
        flat = flat / world
        out, offset = [], 0
        for g in grads:
            out.append(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
        return out

    return reduce
