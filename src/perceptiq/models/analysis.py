"""What a model costs and how its experts behave: parameter counts, multiply-accumulate (MAC) counts per
image (Gamma Table 5, Table 10, appendix D) and mean MoAE router activation per dataset (Gamma Fig. 5b).

MACs are *counted*, not estimated: the model runs once on a dummy image under
``torch.utils.flop_counter.FlopCounterMode``, which records every matrix product, convolution and
attention kernel PyTorch dispatches. Two kernels it has no formula for are added here, so attention is
never silently left out:

* ``aten._native_multi_head_attention`` — ``nn.MultiheadAttention``'s fused inference path (taken in
  eval mode without gradients): input projection, ``Q K^T``, ``A V`` and output projection;
* ``aten._scaled_dot_product_flash_attention_for_cpu`` — the CPU attention kernel: ``Q K^T`` and ``A V``.

The counter reports FLOPs as 2 x MACs for all of these; this module reports MACs (the usual "GFLOPs"
of vision papers, including Gamma's, are GMACs). Element-wise work (LayerNorm, GELU, softmax, the
router softmax, additions) is not counted, as is customary.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

_aten = torch.ops.aten

# The text every model's text tower is measured on: its cost does not depend on the words (CLIP always
# runs the full context of 77 tokens).
_PROBE_PROMPT = "a photo"


# -- parameters ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParameterCount:
    """Trainable and total parameters; ``groups`` holds a model's own split (Gamma: MoAE / head)."""

    trainable: int
    total: int
    groups: Mapping[str, int] = field(default_factory=dict)


def count_parameters(module: nn.Module) -> ParameterCount:
    """Parameters of ``module`` (every registered parameter once; ``requires_grad`` ones are trainable)."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for p in module.parameters())
    own = getattr(module, "count_parameters", None)
    groups = {k: v for k, v in own().items() if k not in ("trainable", "total")} if callable(own) else {}
    return ParameterCount(trainable, total, groups)


# -- multiply-accumulates --------------------------------------------------------------------------------
def _cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """aten._scaled_dot_product_flash_attention_for_cpu: q [B,H,Lq,E], k [B,H,Lk,E], v [B,H,Lk,Ev]."""
    batch, heads, lq, e = query
    lk, ev = key[-2], value[-1]
    return 2 * batch * heads * lq * lk * (e + ev)


def _native_mha_flops(query, key, value, embed_dim, num_heads, *args, out_shape=None, **kwargs) -> int:
    """aten._native_multi_head_attention (batch-first [B,L,d] inputs): in-projection of q, k and v,
    Q K^T, A V, out-projection."""
    batch, lq, d = query
    lk = key[1]
    macs = batch * lq * d * d + 2 * batch * lk * d * d + 2 * batch * lq * lk * d + batch * lq * d * d
    return 2 * macs


ATTENTION_FLOP_FORMULAS = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    _aten._native_multi_head_attention: _native_mha_flops,
}


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one call, in total and per aten operator."""

    total: int
    by_operator: Mapping[str, int]

    def without_attention_modules(self) -> int:
        """The total less every attention kernel: what a counter sees that hooks ``nn.Linear`` /
        ``nn.Conv2d`` modules only and so misses everything inside ``nn.MultiheadAttention`` (its
        projections and the attention products). Valid for counts taken in eval mode without gradients,
        where the fused kernel holds the projections too."""
        attention = sum(v for op, v in self.by_operator.items()
                        if "multi_head_attention" in op or "scaled_dot_product" in op)
        return self.total - attention


def count_macs(fn: Callable[[], Any]) -> MacCount:
    """MACs of ``fn()`` (run once, without gradients) as counted by FlopCounterMode (FLOPs / 2)."""
    counter = FlopCounterMode(display=False, custom_mapping=ATTENTION_FLOP_FORMULAS)
    with torch.no_grad(), counter:
        fn()
    by_operator = {str(op): flops // 2 for op, flops in counter.get_flop_counts().get("Global", {}).items()}
    return MacCount(counter.get_total_flops() // 2, by_operator)


@dataclass(frozen=True)
class ComputeReport:
    """Multiply-accumulates of one model for one image of ``image_size`` x ``image_size``.

    image_tower: the image path up to the image feature (visual tower with its MoAE modules or visual
        prompts, and Gamma's adapter): ``module.image_features`` where the model has one, else
        ``backbone.encode_image``.
    forward: a whole forward pass on a batch of one image after a first call, i.e. with whatever the model
        caches (the text features of Gamma, GRMP-IQA and zero-shot) taken from the cache — what each new image costs.
    text_per_prompt: the text tower (with its MoAE modules) on one prompt. A prompt set of Gamma has five
        prompts; they are encoded once and cached at inference, so this is paid once per prompt set.
    """

    image_size: int
    image_tower: MacCount
    forward: MacCount
    text_per_prompt: MacCount


def _dummy_image(module: nn.Module, image_size: int) -> torch.Tensor:
    parameter = next(module.parameters())
    return torch.zeros(1, 3, image_size, image_size, device=parameter.device, dtype=parameter.dtype)


def compute_report(module: nn.Module, image_size: int | None = None) -> ComputeReport:
    """Count the MACs of ``module`` (a registered model's module with a ``.backbone``), in eval mode."""
    backbone = module.backbone
    size = int(image_size or backbone.info.image_size)
    pixels = _dummy_image(module, size)
    was_training = module.training
    module.eval()
    try:
        image_fn = getattr(module, "image_features", None) or backbone.encode_image
        image_tower = count_macs(lambda: image_fn(pixels))
        with torch.no_grad():
            module(pixels)  # fills any cache (text features) so the counted call is a steady-state one
        forward = count_macs(lambda: module(pixels))
        tokens = backbone.tokenize([_PROBE_PROMPT]).to(pixels.device)
        text = count_macs(lambda: backbone.encode_text(tokens))
    finally:
        module.train(was_training)
    return ComputeReport(size, image_tower, forward, text)


# -- the paper's figures, for comparison -------------------------------------------------------------------
@lru_cache(maxsize=1)
def paper_efficiency() -> dict[str, Any]:
    """Published parameter and compute figures (``paper_efficiency.yaml``), keyed by model name."""
    text = resources.files("perceptiq.models").joinpath("paper_efficiency.yaml").read_text()
    return yaml.safe_load(text) or {}


# -- router activation (Fig. 5b) ---------------------------------------------------------------------------
def mean_router_activation(model: nn.Module, batches: Iterable[torch.Tensor], layer: int = -1) -> tuple[np.ndarray, int]:
    """Mean router probability of each adaptive expert of visual MoAE layer ``layer`` over images.

    batches: CLIP-preprocessed images [B,3,S,S]. Each image contributes the average over *all* its tokens
    (class token and every patch token, equally weighted; ``GammaModel.mean_router_activation``), and the
    images are then averaged with equal weight. Returns (activation [n], number of images).
    """
    if not hasattr(model, "mean_router_activation"):
        raise ValueError(f"{type(model).__name__} has no MoAE router to report on (only Gamma models do)")
    total, count = None, 0
    device = next(model.parameters()).device
    model.eval()
    for pixels in batches:
        per_image = model.mean_router_activation(pixels.to(device), layer=layer).float().cpu()   # [B, n]
        total = per_image.sum(dim=0) if total is None else total + per_image.sum(dim=0)
        count += per_image.shape[0]
    if count == 0:
        raise ValueError("no images to average the router activation over")
    return (total / count).numpy(), count


@dataclass(frozen=True)
class ActivationRow:
    dataset: str
    n_images: int
    activation: np.ndarray      # [n_experts], sums to one


def format_activation_table(rows: Iterable[ActivationRow]) -> str:
    """A Markdown table: one row per dataset, one column per expert (1-based, as the paper numbers them)."""
    rows = list(rows)
    n = len(rows[0].activation) if rows else 0
    header = "| dataset | images | " + " | ".join(f"expert {i + 1}" for i in range(n)) + " |"
    lines = [header, "|" + "---|" * (n + 2)]
    for row in rows:
        cells = " | ".join(f"{v:.4f}" for v in row.activation)
        lines.append(f"| {row.dataset} | {row.n_images} | {cells} |")
    return "\n".join(lines)


def activation_table_csv(rows: Iterable[ActivationRow]) -> str:
    rows = list(rows)
    n = len(rows[0].activation) if rows else 0
    lines = ["dataset,n_images," + ",".join(f"expert_{i + 1}" for i in range(n))]
    lines += [f"{r.dataset},{r.n_images}," + ",".join(f"{v:.6f}" for v in r.activation) for r in rows]
    return "\n".join(lines) + "\n"


def save_activation_chart(rows: Iterable[ActivationRow], path: str | Path, *, title: str | None = None) -> Path:
    """Grouped bar chart (Fig. 5b): for each dataset, one bar per expert. Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise RuntimeError(f"the bar chart needs matplotlib (pip install matplotlib): {err}") from None
    rows = list(rows)
    if not rows:
        raise ValueError("no datasets to plot")
    n = len(rows[0].activation)
    width = 0.8 / n
    x = np.arange(len(rows))
    figure, axes = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1.5), 3.2))
    for i in range(n):
        axes.bar(x + (i - (n - 1) / 2) * width, [r.activation[i] for r in rows], width, label=f"expert {i + 1}")
    axes.set_xticks(x, [r.dataset for r in rows], rotation=30, ha="right")
    axes.set_ylabel("mean router activation")
    axes.set_title(title or "MoAE router activation, last visual layer")
    axes.legend(fontsize="small")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
