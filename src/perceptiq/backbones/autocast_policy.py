"""How a CLIP backbone runs under autocast (bf16 on CPU or CUDA): fast, and ranking like fp32.

Three adjustments, by composition; same parameters, same ``state_dict`` keys; no open_clip code is copied.

1. Patch embedding in fp32: open_clip's ViT patch embedding (``visual.conv1``) becomes a
   ``Float32PatchEmbedding``, an ``nn.Conv2d`` subclass that computes in fp32 even under autocast.
2. Attention input layout where torch's fused attention kernel is not used (training, gradients,
   ``torch.compile``, CUDA autocast): a forward pre-hook on every ``nn.MultiheadAttention``.
3. A bf16 residual stream for inference (``bf16_residual_stream()``, entered by ``Assessor.predict``
   together with the bf16 weight copies of ``inference_weights.py``): the fp32 patch embeddings (or a
   convolutional stem's output) are rounded to bf16 once, so the class token, positional embedding, layer
   norms, residual adds and every linear layer of the tower run in bf16, as a bare open_clip model cast to
   bf16 does, but from patch embeddings computed in fp32 from the pixels. Training and anything that needs
   a gradient keep the fp32 stream.

Why (1), with measurements on this project's 2-core AVX512-BF16 CPU (ViT-B/16, batch 8, bf16 autocast):

* Precision. The first layer sees raw pixels; in bf16 a pixel keeps 8 bits of mantissa, so the small
  differences that noise, blur and compression make are rounded before the model sees them. On the
  built-in model scoring 175 distorted photos, the SRCC between bf16 and fp32 scores rose from 0.99904 to
  0.99979 (max |difference| 0.041 -> 0.007; 0.99993 once the score heads also ran in fp32,
  ``heads/``). Cost: 0.7 % of ViT-B/16's FLOPs.
* Speed. With a bf16 patch embedding, open_clip adds the class token and positional embedding in the
  conv's dtype, so the whole residual stream is bf16; torch then leaves nn.MultiheadAttention's fused
  inference path and projects q/k/v through ``F.multi_head_attention_forward`` on a transposed,
  non-contiguous [L, B, W] view, which the CPU's bf16 matmul handles by expanding the [W, 3W] weight over
  the sequence and copying it (348 M elements per block, 0.33 s). 1.35 images/s. With the fp32 patch
  embedding the residual stream stays fp32 (autocast still runs every linear layer in bf16), the fused
  attention path is taken and the same model runs at 8.0-9.1 images/s (fp32 without autocast: 4.2).

Why (2): when gradients are needed torch never takes the fused path, and the same slow projection of a
transposed [L, B, W] view happens in training (GRMP prompts on ViT-B/16 under bf16: 2.6 s forward+backward
of 4 images, 80 % of it copying expanded weights; 2.7x slower than fp32). The hook hands the module the
same [B, L, W] *shape* laid out in memory as [L, B, W], so the module's own transpose gives a contiguous
tensor and the projection is one GEMM. It acts only under autocast when torch will not take its fused
path (a module in training mode, gradients in play, a graph being compiled, CUDA autocast): where the
fused path runs, it is faster on the plain layout (8.0 vs 6.6 images/s). Compiled bf16 ViT-B/16 went from
1.4 to 9.4 images/s once the hook also acted inside compiled graphs.

Why (3), measured on an Intel Xeon AMX-BF16 (2 cores, ViT-B/16 zero-shot, batch 8, bf16 weight copies on;
docs/benchmarks.md, issue 12): with an fp32 stream, autocast rounds the stream into bf16 before every
GEMM and every residual add promotes the bf16 branch back to fp32: 49 extra copies per forward, 21 ms of
259 (8 %), which kept the model at 0.90x a bare bf16 open_clip. With the stream in bf16 those copies are
gone (53 copies, 7.7 ms, as the bare model's 50); what remains above the bare model is the fp32 patch
embedding (+3.4 ms). Ranking cost, measured on the built-in model over 608 images (8 held-out photographs
and 25 distortion types x levels 1, 3, 5): bf16-vs-fp32 SRCC 1.00000 either way, largest score difference
0.0007 with the fp32 stream, 0.0010 with the bf16 one (scores' standard deviation 0.28). What keeps bf16
ranking like fp32 is (1), the pixels entering the first layer in fp32, not the stream's width.
"""
from __future__ import annotations

import contextlib
import contextvars

import torch
from torch import nn

_BF16_RESIDUAL_STREAM: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "perceptiq_bf16_residual_stream", default=False)


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in fp32, or left in fp64: what score heads, routers and losses compute in.

    ``.float()`` would also turn an fp64 model's values into fp32, so a reference run in fp64 (the tests
    compare fp32 results against one, docs/training.md "Tolerances") would carry fp32 rounding."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


@contextlib.contextmanager
def bf16_residual_stream():
    """Within this context (this thread / task), patch embeddings enter the residual stream in bf16 where
    ``to_residual_stream`` says (module docstring, adjustment 3)."""
    token = _BF16_RESIDUAL_STREAM.set(True)
    try:
        yield
    finally:
        _BF16_RESIDUAL_STREAM.reset(token)


def to_residual_stream(embeddings: torch.Tensor) -> torch.Tensor:
    """Patch embeddings [B, W, h, w] as the residual stream takes them: rounded to bf16 inside
    ``bf16_residual_stream()`` when bf16 autocast is on, no gradient is being recorded and no graph is
    being compiled; otherwise unchanged (fp32 under autocast, fp64 in reference runs)."""
    if not _BF16_RESIDUAL_STREAM.get() or embeddings.dtype != torch.float32:
        return embeddings
    device = embeddings.device.type
    if (torch.is_grad_enabled() or torch.compiler.is_compiling() or not torch.is_autocast_enabled(device)
            or torch.get_autocast_dtype(device) != torch.bfloat16):
        return embeddings
    return embeddings.to(torch.bfloat16)


class Float32PatchEmbedding(nn.Conv2d):
    """``nn.Conv2d`` that computes in its weights' dtype even under autocast (the pixels are cast to it).

    pixels [B, 3, S, S] -> patch embeddings [B, W, S/p, S/p] in the weights' dtype (fp32 for a model kept
    in fp32 and run under autocast), rounded to bf16 by ``to_residual_stream`` for bf16 inference."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(pixels.device.type, enabled=False):
            embeddings = self._conv_forward(pixels.to(self.weight.dtype), self.weight, self.bias)
        return to_residual_stream(embeddings)


def keep_patch_embedding_in_fp32(model: nn.Module) -> bool:
    """Make ``model.visual.conv1`` (open_clip's ViT patch embedding) a ``Float32PatchEmbedding``; same
    parameters, same state_dict. Returns False where the model has no such conv (e.g. a ResNet tower).
    Idempotent."""
    visual = getattr(model, "visual", None)
    conv = getattr(visual, "conv1", None)
    if isinstance(conv, Float32PatchEmbedding):
        return True
    if type(conv) is not nn.Conv2d or not hasattr(visual, "transformer"):
        return False
    conv.__class__ = Float32PatchEmbedding
    return True


def _takes_fused_path(module: nn.MultiheadAttention, query: torch.Tensor) -> bool:
    """Whether torch can run ``module`` through its fused inference kernel (which wants the plain layout):
    only in eval mode and with no gradient to compute, never inside ``torch.compile`` (the traced graph
    takes the unfused path) and never under CUDA autocast (torch checks for it). The CUDA case is
    reasoned from torch's code, not measured: no GPU was lent to this project so far. Nor for a module
    torch's fast path refuses whatever the mode (``nn.MultiheadAttention.forward``'s own checks): an odd
    head count (perceptiq-tiny's 192-wide ViT has 3 heads of 64), separate q/k/v weights, bias_k/v,
    add_zero_attn, or the fast path switched off."""
    if module.training or torch.compiler.is_compiling():
        return False
    if (module.num_heads % 2 or not module._qkv_same_embed_dim or module.bias_k is not None
            or module.add_zero_attn or not torch.backends.mha.get_fastpath_enabled()):
        return False
    if query.device.type == "cuda":   # torch's MHA leaves its fused path whenever CUDA autocast is on
        return False
    return not (torch.is_grad_enabled() and (query.requires_grad or any(p.requires_grad for p in module.parameters())))


def _sequence_first_layout(module: nn.MultiheadAttention, args: tuple, kwargs: dict):
    if not args or not module.batch_first:
        return None
    query = args[0]
    if query.dim() != 3 or not torch.is_autocast_enabled(query.device.type) or _takes_fused_path(module, query):
        return None
    relaid = query.transpose(0, 1).contiguous().transpose(0, 1)      # shape [B, L, W], memory [L, B, W]
    # self-attention passes one tensor three times; keep it one object so the module's q-is-k-is-v
    # branch (one packed projection) still applies
    return tuple(relaid if arg is query else arg for arg in args), kwargs


def install_attention_layout_hooks(model: nn.Module) -> int:
    """Register the layout hook on every batch-first ``nn.MultiheadAttention`` in ``model``; returns how
    many were added (0 on a second call)."""
    installed = 0
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention) and module.batch_first:
            if getattr(module, "_perceptiq_layout_hook", False):
                continue
            module.register_forward_pre_hook(_sequence_first_layout, with_kwargs=True)
            module._perceptiq_layout_hook = True
            installed += 1
    return installed


def install_autocast_policy(model: nn.Module) -> None:
    """Apply both adjustments to an open_clip CLIP model (idempotent)."""
    keep_patch_embedding_in_fp32(model)
    install_attention_layout_hooks(model)
