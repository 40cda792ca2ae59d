"""The MoAE router ``G(x) = softmax(W x)`` (Gamma Eq. 3), one probability vector per token."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.autocast_policy import at_least_float32

# Why random and not zero: the adaptive experts start as identical copies of one FFN. With W = 0 every
# token is routed uniformly, so every expert receives the same gradient and the router receives none
# (its gradient is a weighted difference of identical expert outputs) -- the experts would stay copies
# forever. A small random W breaks that symmetry from the first step while keeping routing near uniform.
DEFAULT_ROUTER_INIT_STD = 0.02


class Router(nn.Module):
    """Linear router without bias: ``x [..., d] -> G(x) [..., n]`` (rows sum to one).

    ``weight`` is ``W`` in R^{n x d} of Eq. 3. ``init_std`` is the standard deviation of its normal
    initialisation; 0 gives exactly uniform routing (and, with identical experts, no symmetry breaking).
    """

    def __init__(self, width: int, n_experts: int, *, init_std: float = DEFAULT_ROUTER_INIT_STD,
                 generator: torch.Generator | None = None, device=None, dtype=None):
        super().__init__()
        if n_experts < 1:
            raise ValueError(f"a router needs at least one expert, got n_experts={n_experts}")
        if init_std < 0:
            raise ValueError(f"router init_std must be >= 0, got {init_std}")
        self.weight = nn.Parameter(torch.zeros(n_experts, width, device=device, dtype=dtype))
        if init_std > 0:
            with torch.no_grad():
                self.weight.normal_(0.0, init_std, generator=generator)

    @property
    def n_experts(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = F.linear(x, self.weight)
        # Softmax in float32 so half-precision inference gives the same routing as training.
        return torch.softmax(at_least_float32(logits), dim=-1).to(x.dtype)
