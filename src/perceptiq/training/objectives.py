"""Training objectives, by name (recipes say ``loss: mse`` or ``loss: bce``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def mse_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gamma section 4.2: MSE between predicted scores and MOS normalised to [0, 1]."""
    return F.mse_loss(scores.float(), targets.float())


def bce_loss(p_high: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """GRMP-IQA Eq. 3: -(y log p + (1 - y) log(1 - p)), y = MOS rescaled to [0, 1]."""
    p = p_high.float().clamp(1e-6, 1 - 1e-6)
    return F.binary_cross_entropy(p, targets.float())


LOSSES = {"mse": mse_loss, "bce": bce_loss}


def get_loss(name: str):
    if name not in LOSSES:
        raise ValueError(f"unknown loss '{name}': choose one of {', '.join(LOSSES)}")
    return LOSSES[name]
