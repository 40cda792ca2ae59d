"""Training objectives, by name (recipes say ``loss: mse`` or ``loss: bce``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbones.autocast_policy import at_least_float32


def mse_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gamma section 4.2: MSE between predicted scores and MOS normalised to [0, 1]."""
    scores = at_least_float32(scores)
    return F.mse_loss(scores, targets.to(scores.dtype))


def bce_loss(p_high: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """GRMP-IQA Eq. 3: -(y log p + (1 - y) log(1 - p)), y = MOS rescaled to [0, 1].

    A target a little outside [0, 1] (a label past a nominal range, e.g. LIVE's realigned DMOS above
    Table 9's 100) is taken at the nearest end: a probability cannot be asked to exceed 1.
    """
    p = at_least_float32(p_high).clamp(1e-6, 1 - 1e-6)
    return F.binary_cross_entropy(p, targets.to(p.dtype).clamp(0.0, 1.0))


def pairwise_ranking_loss(p_high: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """RankNet loss (Burges et al. 2005) over every ordered pair inside a group, as in RankIQA (Liu et al. 2017).

    p_high [B] in (0, 1), targets [B], groups [B] (integer ids: versions of the same image crop share one).
    For each pair (i, j) of one group with targets[i] > targets[j] the loss is
    ``softplus(-(z_i - z_j))`` with ``z = logit(p_high)``: the model is asked only to *order* the versions
    of one image, which is certain for synthetic levels of the same content. Mean over such pairs;
    0 when there are none.
    """
    p = at_least_float32(p_high).clamp(1e-6, 1 - 1e-6)
    z = torch.log(p) - torch.log1p(-p)
    same = groups.view(-1, 1) == groups.view(1, -1)
    better = targets.view(-1, 1) > targets.view(1, -1)
    pairs = same & better
    if not bool(pairs.any()):
        return z.sum() * 0.0
    margin = z.view(-1, 1) - z.view(1, -1)
    return F.softplus(-margin[pairs]).mean()


def bce_rank_loss(p_high: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor,
                  rank_weight: float = 1.0) -> torch.Tensor:
    """GRMP Eq. 3 (calibration against the target) + ``rank_weight`` x ``pairwise_ranking_loss`` (order)."""
    return bce_loss(p_high, targets) + rank_weight * pairwise_ranking_loss(p_high, targets, groups)


LOSSES = {"mse": mse_loss, "bce": bce_loss, "bce+rank": bce_rank_loss}
# losses that need the batch's group ids (versions of one image) as a third argument
GROUPED_LOSSES = frozenset({"bce+rank"})


def get_loss(name: str):
    if name not in LOSSES:
        raise ValueError(f"unknown loss '{name}': choose one of {', '.join(LOSSES)}")
    return LOSSES[name]
