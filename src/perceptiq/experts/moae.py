"""Mixture of Assessment Experts (Gamma section 3.3, Eq. 2-4), wrapping one transformer block's FFN.

    y_shared   = E_shared(x)                                  (Eq. 2, the block's original FFN)
    y_adaptive = sum_i G(x)_i E_i(x),   G(x) = softmax(W x)   (Eq. 3)
    y          = y_shared + sigma * y_adaptive                (Eq. 4, sigma learnable, zero-initialised)

The n adaptive experts start as copies of the shared FFN and are evaluated together: their weights are
stacked into ``fc_weight [n,d,h]`` / ``proj_weight [n,h,d]`` and applied to every token with two GEMMs.
"""
from __future__ import annotations

import torch
from torch import nn

from ..backbones.autocast_policy import at_least_float32
from .router import DEFAULT_ROUTER_INIT_STD, Router


def split_ffn(ffn: nn.Module) -> tuple[nn.Linear, nn.Module, nn.Linear]:
    """(c_fc, activation, c_proj) of an open_clip block MLP (``Sequential(c_fc, gelu, c_proj)``).

    Raises a ValueError naming the structure found when the module is anything else.
    """
    children = list(ffn.named_children())
    names = [name for name, _ in children]
    if (len(children) != 3 or names[0] != "c_fc" or names[2] != "c_proj"
            or not isinstance(children[0][1], nn.Linear) or not isinstance(children[2][1], nn.Linear)):
        raise ValueError(
            "MixtureOfAssessmentExperts wraps an open_clip block MLP Sequential(c_fc: Linear, activation, "
            f"c_proj: Linear); got children {names} ({type(ffn).__name__})"
        )
    fc, activation, proj = (module for _, module in children)
    if list(activation.parameters()):
        raise ValueError(f"the FFN activation {type(activation).__name__} has parameters; expected GELU/QuickGELU")
    return fc, activation, proj


def mix_experts(x: torch.Tensor, weights: torch.Tensor, fc_weight: torch.Tensor, fc_bias: torch.Tensor,
                proj_weight: torch.Tensor, proj_bias: torch.Tensor, activation: nn.Module) -> torch.Tensor:
    """``sum_i weights_i * E_i(x)`` for all experts at once (Eq. 3 with G(x) given as ``weights``).

    x [..., d], weights [..., n], fc_weight [n,d,h], fc_bias [n,h], proj_weight [n,h,d], proj_bias [n,d]
    -> [..., d]. Two GEMMs over all T tokens, whatever n is: [T,d] x [d,n*h] (the n first layers side by
    side, bias fused) and [T,n*h] x [n*h,d], where the gate is folded into the hidden activations so the
    second product sums over experts and hidden units at once. The hidden activations stay in the GEMM's
    dtype (bf16 under autocast): they are the largest tensor here (n*h per token), and promoting them to
    fp32 for the bias, the activation and the gate cost Gamma a third of its time under bf16.
    """
    n, d, h = fc_weight.shape
    tokens = x.reshape(-1, d)                                                        # [T, d]
    gates = weights.reshape(-1, n)                                                   # [T, n]
    first = fc_weight.permute(1, 0, 2).reshape(d, n * h)                             # [d, n*h]
    hidden = torch.addmm(fc_bias.reshape(n * h).to(first.dtype), tokens, first)      # [T, n*h]
    hidden = activation(hidden).view(-1, n, h) * gates.unsqueeze(-1).to(hidden.dtype)
    out = torch.addmm(gates @ proj_bias, hidden.view(-1, n * h), proj_weight.reshape(n * h, d))
    return out.view(*x.shape[:-1], d)


class MixtureOfAssessmentExperts(nn.Module):
    """Drop-in replacement for a block's ``mlp``: ``x [..., d] -> [..., d]`` (any token layout).

    shared_ffn: the block's original FFN, kept as ``self.shared`` (frozen unless ``freeze_shared=False``,
        Table 4 "Unfreeze shared expert"); its activation (QuickGELU for OpenAI weights, GELU otherwise) is
        reused by the adaptive experts.
    n_experts: number of adaptive experts, each initialised as a copy of ``shared_ffn``; 0 gives the
        plain FFN (Fig. 5a "0 experts"), with no router and no sigma.
    use_sigma: True -> ``sigma`` is a learnable scalar initialised to ``sigma_init`` (Eq. 4). False ->
        Table 4 "w/o merging factor sigma": a plain sum ``y_shared + y_adaptive`` (sigma is a fixed buffer 1).
    train_sigma: False freezes sigma at ``sigma_init`` (a control: at the default 0 the adaptive experts
        never contribute nor receive a gradient, so the MoAE is disabled while the model keeps its shape).
    router_init_std: std of the router's normal initialisation (see ``router.py`` for why not zero).
    force_expert / force_renormalize: see ``set_forced_expert`` (Table 6).
    batch_first: the layout of the tokens the block receives ([B,L,d] if True, [L,B,d] if False); only
        used to average recorded router probabilities over tokens.

    ``record_routing = True`` keeps the last router probabilities in ``last_router_probs`` ([..., n],
    detached); off by default so inference does not hold an extra tensor per layer.
    ``bypass_experts = True`` returns ``y_shared`` only (the original CLIP block when the shared expert is
    frozen), whatever sigma is.
    """

    def __init__(self, shared_ffn: nn.Module, n_experts: int = 3, *, freeze_shared: bool = True,
                 use_sigma: bool = True, sigma_init: float = 0.0, train_sigma: bool = True,
                 router_init_std: float = DEFAULT_ROUTER_INIT_STD, force_expert: int | None = None,
                 force_renormalize: bool = False, batch_first: bool = True):
        super().__init__()
        if n_experts < 0:
            raise ValueError(f"n_experts must be >= 0, got {n_experts}")
        fc, activation, proj = split_ffn(shared_ffn)
        self.shared = shared_ffn
        self.n_experts = int(n_experts)
        self.use_sigma = bool(use_sigma)
        self.batch_first = bool(batch_first)
        self.record_routing = False
        self.bypass_experts = False
        self.last_router_probs: torch.Tensor | None = None
        for p in self.shared.parameters():
            p.requires_grad_(not freeze_shared)
        # A parameter-free module shared with ``self.shared``; kept as a plain attribute so it is not
        # listed twice among the submodules.
        self.__dict__["activation"] = activation
        if self.n_experts == 0:
            self.force_expert, self.force_renormalize = None, False
            return
        n = self.n_experts
        with torch.no_grad():
            self.fc_weight = nn.Parameter(fc.weight.t().unsqueeze(0).repeat(n, 1, 1).clone())     # [n,d,h]
            self.fc_bias = nn.Parameter(_bias_or_zeros(fc, fc.out_features).unsqueeze(0).repeat(n, 1))
            self.proj_weight = nn.Parameter(proj.weight.t().unsqueeze(0).repeat(n, 1, 1).clone())  # [n,h,d]
            self.proj_bias = nn.Parameter(_bias_or_zeros(proj, proj.out_features).unsqueeze(0).repeat(n, 1))
        self.router = Router(fc.in_features, n, init_std=router_init_std,
                             device=fc.weight.device, dtype=fc.weight.dtype)
        sigma = torch.tensor(float(sigma_init) if use_sigma else 1.0, device=fc.weight.device)
        if use_sigma:
            self.sigma = nn.Parameter(sigma, requires_grad=bool(train_sigma))
        else:
            self.register_buffer("sigma", sigma)
        self.set_forced_expert(force_expert, renormalize=force_renormalize)

    # open_clip reads ``block.mlp.c_fc.weight.dtype`` to pick its cast dtype (Transformer.get_cast_dtype),
    # so the wrapper answers for the FFN it wraps.
    @property
    def c_fc(self) -> nn.Linear:
        return self.shared.c_fc

    @property
    def c_proj(self) -> nn.Linear:
        return self.shared.c_proj

    # -- Table 6 -------------------------------------------------------------------------------------
    def set_forced_expert(self, index: int | None, *, renormalize: bool = False) -> None:
        """Keep only adaptive expert ``index`` (0-based) at test time; None restores the full mixture.

        renormalize=False (the paper's wording, "the router weights of the other experts are set to 0"):
        the kept expert keeps its router weight G(x)_index. renormalize=True: its weight becomes 1, as if
        the router's output were renormalised over the one remaining expert.
        """
        if index is not None and not 0 <= index < self.n_experts:
            raise ValueError(f"force_expert={index} is out of range for {self.n_experts} adaptive experts")
        self.force_expert = index
        self.force_renormalize = bool(renormalize)

    def expert_weights(self, probs: torch.Tensor) -> torch.Tensor:
        """Router probabilities [..., n] -> the weights actually applied (after ``force_expert``)."""
        if self.force_expert is None:
            return probs
        keep = torch.zeros_like(probs)
        keep[..., self.force_expert] = 1.0
        return keep if self.force_renormalize else probs * keep

    # -- forward ---------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y_shared = self.shared(x)
        if self.n_experts == 0 or self.bypass_experts:
            return y_shared
        probs = self.router(x)
        if self.record_routing:
            self.last_router_probs = probs.detach()
        y_adaptive = mix_experts(x, self.expert_weights(probs), self.fc_weight, self.fc_bias,
                                 self.proj_weight, self.proj_bias, self.activation)
        return y_shared + self.sigma.to(y_shared.dtype) * y_adaptive

    def mean_router_activation(self) -> torch.Tensor:
        """Last recorded router probabilities averaged over tokens: [B, n] (Fig. 5b).

        Every token of the sequence counts equally (for the visual tower: the class token and all patch
        tokens). Needs ``record_routing = True`` during the forward pass.
        """
        if self.last_router_probs is None:
            raise RuntimeError("no router probabilities recorded: set record_routing = True and run a forward pass")
        token_axis = 1 if self.batch_first else 0
        return at_least_float32(self.last_router_probs).mean(dim=token_axis)

    def extra_repr(self) -> str:
        return (f"n_experts={self.n_experts}, use_sigma={self.use_sigma}, "
                f"force_expert={self.force_expert}, force_renormalize={self.force_renormalize}")


def _bias_or_zeros(linear: nn.Linear, size: int) -> torch.Tensor:
    if linear.bias is not None:
        return linear.bias.detach()
    return torch.zeros(size, device=linear.weight.device, dtype=linear.weight.dtype)
