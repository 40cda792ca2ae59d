"""Counting the floating-point operations a model really executes, attention included.

Convention: one multiply-accumulate (MAC) = 2 FLOPs. The papers quote MACs ("ViT-B/16: 17.6 GMACs per
224×224 image", often written "17.6 GFLOPs"); perceptiq reports FLOPs = 2 × MACs, so the same tower is
≈ 35.1 GFLOPs here.

``torch.utils.flop_counter.FlopCounterMode`` counts matmuls, convolutions and the CUDA attention kernels,
but on its own it undercounts a CLIP vision tower:

* ``nn.MultiheadAttention`` (open_clip's attention) takes a fused "fast path" in eval/no-grad mode,
  ``aten._native_multi_head_attention``, which has no FLOP formula: the Q/K/V/output projections *and*
  the attention products vanish from the count (ViT-B/16: 11.3 instead of 17.6 GMACs);
* on the slow path, attention runs ``F.scaled_dot_product_attention``, which on the CPU dispatches to
  ``aten._scaled_dot_product_flash_attention_for_cpu`` — also without a formula (−0.7 GMACs).

``count_flops`` therefore runs the function with the fast path switched off and adds formulas for the
CPU attention kernels (forward and backward), so every matmul is counted whatever the device.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _attention_forward_flops(query_shape, key_shape, value_shape) -> int:
    """FLOPs of softmax(Q Kᵀ) V for q [B,H,L,E], k [B,H,S,E], v [B,H,S,Ev]: two batched matmuls
    (scores and weighted sum), 2 FLOPs per MAC; the softmax itself is not a matmul and not counted."""
    batch, heads, q_len, head_dim = query_shape
    key_len = key_shape[-2]
    value_dim = value_shape[-1]
    return 2 * batch * heads * q_len * key_len * (head_dim + value_dim)


def _cpu_sdpa_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return _attention_forward_flops(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                       **kwargs) -> int:
    """Gradients for Q, K, V and the attention weights: four matmuls of the forward's sizes (= 2× the
    forward), the same rule torch uses for its CUDA attention kernels."""
    return 2 * _attention_forward_flops(query_shape, key_shape, value_shape)


def _extra_formulas() -> dict:
    """FLOP formulas for ops ``FlopCounterMode`` does not know (it passes them tensor shapes)."""
    formulas = {}
    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", _cpu_sdpa_forward),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward", _cpu_sdpa_backward)):
        packet = getattr(aten, name, None)
        if packet is not None:  # both exist in torch >= 2.2
            formulas[packet] = formula
    return formulas


@contextlib.contextmanager
def _unfused_attention():
    """Switch ``nn.MultiheadAttention``'s fused fast path off (restored afterwards)."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "get_fastpath_enabled"):
        yield
        return
    saved = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(saved)


@dataclass
class FlopCount:
    """Total FLOPs of one call and the share of each op (``aten`` op name -> FLOPs)."""

    total: int
    by_op: dict[str, int]

    @property
    def macs(self) -> float:
        return self.total / 2


def count_flops(fn: Callable, *args, **kwargs) -> FlopCount:
    """Run ``fn(*args, **kwargs)`` once and count its FLOPs (2 per MAC), attention included.

    Gradients are whatever the caller set (wrap in ``torch.no_grad()`` for inference; a training step
    counts its backward too). The fused ``nn.MultiheadAttention`` path is disabled for the call, which
    changes the kernels, not the arithmetic.
    """
    with _unfused_attention(), FlopCounterMode(display=False, custom_mapping=_extra_formulas()) as counter:
        fn(*args, **kwargs)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return FlopCount(total=int(counter.get_total_flops()), by_op=by_op)


@dataclass
class PerImageFlops:
    """FLOPs of a forward as ``per_batch + per_image × B``.

    ``per_batch`` is work done once per call whatever the batch (0 for perceptiq's models at inference: the
    text features of every model, GRMP's learned prompts included, are cached); ``per_image`` is the
    image tower and head.
    """

    per_image: int
    per_batch: int
    by_op_one_image: dict[str, int]

    def at_batch(self, batch_size: int) -> int:
        return self.per_batch + self.per_image * batch_size


def forward_flops(module: torch.nn.Module, image_size: int, *, device: torch.device | str = "cpu") -> PerImageFlops:
    """Count ``module(pixels)`` at batch sizes 1 and 2 (no gradient) and split the FLOPs into a per-image
    and a per-call part. The module is called once beforehand so lazily filled caches (the text
    features) are warm, as they are in a scoring run."""
    device = torch.device(device)

    def pixels(batch: int) -> torch.Tensor:
        return torch.zeros(batch, 3, image_size, image_size, device=device)

    with torch.no_grad():
        module(pixels(1))
        one = count_flops(module, pixels(1))
        two = count_flops(module, pixels(2))
    per_image = two.total - one.total
    return PerImageFlops(per_image=per_image, per_batch=one.total - per_image, by_op_one_image=one.by_op)


def vit_image_tower_macs(*, image_size: int, patch_size: int, width: int, layers: int, mlp_ratio: float = 4.0,
                         output_dim: int | None = None, extra_tokens: int = 0) -> int:
    """Analytic MACs of a CLIP ViT image tower for one image (the reference the counter is tested on).

    Patch embedding (3·p² × W per patch) + per block: Q/K/V/output projections 4·N·W², MLP
    2·N·W·(r·W), attention scores and weighted sum 2·N²·W, with N = patches + 1 (CLS) + ``extra_tokens``
    (GRMP's visual prompts) + the output projection W × D. Norms, softmax, GELU and biases are
    element-wise and left out, as in the papers' counts. ViT-B/16 at 224: 17.56 G.
    """
    patches = (image_size // patch_size) ** 2
    tokens = patches + 1 + extra_tokens
    hidden = int(width * mlp_ratio)
    per_block = 4 * tokens * width * width + 2 * tokens * width * hidden + 2 * tokens * tokens * width
    embed = patches * 3 * patch_size * patch_size * width
    head = width * output_dim if output_dim else 0
    return embed + layers * per_block + head


def backbone_tower_macs(backbone, extra_tokens: int = 0) -> int:
    """``vit_image_tower_macs`` with the shape read off a ``ClipBackbone``'s open_clip vision tower."""
    visual = backbone.clip.visual
    kernel = visual.conv1.kernel_size
    first_block = visual.transformer.resblocks[0]
    size, patch, width = backbone.info.image_size, int(kernel[0] if isinstance(kernel, (tuple, list)) else kernel), \
        int(visual.transformer.width)
    # a convolutional stem (backbones/stems.py) replaces the linear patch embedding: count its convolutions
    stem = (visual.conv1.macs(size, size) - (size // patch) ** 2 * 3 * patch * patch * width
            if hasattr(visual.conv1, "macs") else 0)
    return stem + vit_image_tower_macs(
        image_size=backbone.info.image_size,
        patch_size=int(kernel[0] if isinstance(kernel, (tuple, list)) else kernel),
        width=int(visual.transformer.width),
        layers=len(visual.transformer.resblocks),
        mlp_ratio=first_block.mlp.c_fc.out_features / first_block.mlp.c_fc.in_features,
        output_dim=int(visual.proj.shape[1]) if visual.proj is not None else None,
        extra_tokens=extra_tokens,
    )
