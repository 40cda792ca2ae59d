"""Probability of the positive prompt of an antonym pair (CLIP-IQA; GRMP-IQA Eq. 2).

    p(pos | x) = exp(<T_pos, f> / tau) / (exp(<T_pos, f> / tau) + exp(<T_neg, f> / tau))

with <.,.> cosine similarity and 1/tau CLIP's learned logit scale. With several pairs the
probabilities are averaged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbones.autocast_policy import at_least_float32


def antonym_probability(image_features: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                        inv_temperature: torch.Tensor | float) -> torch.Tensor:
    """image_features [B,D]; positive, negative [P,D] text features of P pairs -> [B] in (0, 1), fp32.

    Computed in fp32 with autocast off whatever the features' dtype: under bf16 the cosines (and hence the
    scores) would keep ~3 significant digits, and near-equal images would tie.
    """
    with torch.autocast(image_features.device.type, enabled=False):
        image_features = F.normalize(at_least_float32(image_features), dim=-1)
        pos = image_features @ F.normalize(at_least_float32(positive), dim=-1).t()   # [B,P]
        neg = image_features @ F.normalize(at_least_float32(negative), dim=-1).t()   # [B,P]
        logits = torch.stack([pos, neg], dim=-1) * inv_temperature          # [B,P,2]
        return torch.softmax(logits, dim=-1)[..., 0].mean(dim=-1)
