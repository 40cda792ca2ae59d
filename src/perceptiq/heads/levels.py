"""Score as the expectation over K ordered level prompts (Gamma Eq. 1; zero-shot 5-level scoring).

    q = sum_k C_k * softmax_k( cos(I', T_k) / tau )

With C = (0, 0.25, 0.5, 0.75, 1) and tau = 1 / CLIP's logit scale this is the zero-shot 5-level score in
[0, 1]; Gamma learns C (initialised to 0.2 ... 1.0) on top of an adapter.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.autocast_policy import at_least_float32


def level_probabilities(image_features: torch.Tensor, level_features: torch.Tensor,
                        inv_temperature: torch.Tensor | float) -> torch.Tensor:
    """Softmax over levels of scaled cosine similarity.

    image_features [B,D], level_features [K,D] (or [B,K,D] for per-image prompt sets) -> [B,K].
    Both are L2-normalised here, so callers may pass raw features. Computed in fp32 with autocast off
    (bf16 cosines would round the scores to ~3 significant digits).
    """
    with torch.autocast(image_features.device.type, enabled=False):
        image_features = F.normalize(at_least_float32(image_features), dim=-1)
        level_features = F.normalize(at_least_float32(level_features), dim=-1)
        if level_features.dim() == 2:
            logits = image_features @ level_features.t()
        else:
            logits = torch.einsum("bd,bkd->bk", image_features, level_features)
        return torch.softmax(logits * inv_temperature, dim=-1)


def level_expectation(image_features: torch.Tensor, level_features: torch.Tensor,
                      level_values: torch.Tensor, inv_temperature: torch.Tensor | float) -> torch.Tensor:
    """Gamma Eq. 1: ``sum_k C_k softmax(cos(I, T_k) / tau)``; [B,D], [K,D] or [B,K,D], [K] -> [B]."""
    probs = level_probabilities(image_features, level_features, inv_temperature)
    return (probs * level_values.to(probs.dtype)).sum(dim=-1)   # not a matmul: autocast leaves it in fp32


class LevelExpectationHead(nn.Module):
    """Level-expectation head with values ``C`` (learnable or fixed) and temperature ``tau``."""

    def __init__(self, level_values: list[float], tau: float | None = None, learn_values: bool = False):
        super().__init__()
        values = torch.tensor(level_values, dtype=torch.float32)
        if learn_values:
            self.level_values = nn.Parameter(values)
        else:
            self.register_buffer("level_values", values)
        self.tau = tau

    def forward(self, image_features: torch.Tensor, level_features: torch.Tensor,
                logit_scale: torch.Tensor | None = None) -> torch.Tensor:
        if self.tau is not None:
            inv_t = 1.0 / self.tau
        elif logit_scale is not None:
            inv_t = logit_scale
        else:
            raise ValueError("LevelExpectationHead needs tau or CLIP's logit_scale")
        return level_expectation(image_features, level_features, self.level_values, inv_t)
