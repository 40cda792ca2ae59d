"""The image-feature adapter of Gamma Eq. 1: ``I' = Adapter(I)``, two linear layers with a ReLU between.

The paper gives neither the hidden width nor whether the adapter is residual. Width: Table 5 lists
149.9M parameters with no MoAE layer against 149.62M for plain ViT-B/16 CLIP, leaving about 0.28M for the
adapter and C; 512 -> 256 -> 512 with biases is 262,912 (+5 for C), which rounds to 149.9M (128 would give
149.8M, 512 would give 150.1M). Residual with a zero-initialised output layer: at step 0 ``I' = I``, so the
untrained model scores exactly like the zero-shot backbone with the same prompts (docs/gamma.md).
"""
from __future__ import annotations

import torch
from torch import nn

DEFAULT_ADAPTER_HIDDEN = 256


class Adapter(nn.Module):
    """``x [..., d] -> [..., d]``: ``up(relu(down(x)))``, plus ``x`` itself when ``residual``.

    zero_init_output (default: same as ``residual``) zeroes ``up`` so that a residual adapter starts as
    the identity.
    """

    def __init__(self, width: int, hidden: int = DEFAULT_ADAPTER_HIDDEN, *, residual: bool = True,
                 zero_init_output: bool | None = None):
        super().__init__()
        if width < 1 or hidden < 1:
            raise ValueError(f"adapter width and hidden size must be positive, got {width} and {hidden}")
        self.residual = bool(residual)
        self.down = nn.Linear(width, hidden)
        self.activation = nn.ReLU()
        self.up = nn.Linear(hidden, width)
        if residual if zero_init_output is None else zero_init_output:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.up(self.activation(self.down(x)))
        return x + out if self.residual else out
