"""Put MoAE modules into a CLIP backbone by composition (Gamma Eq. 5) and act on them as a group.

open_clip's ``ResidualAttentionBlock`` computes ``x + ls_2(self.mlp(ln_2(x)))``, so replacing a block's
``mlp`` attribute with a ``MixtureOfAssessmentExperts`` wrapping that same ``mlp`` is all it takes; the
transformer itself is never copied or edited.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

from torch import nn

from ..backbones import ClipBackbone
from .moae import MixtureOfAssessmentExperts

TOWERS = ("visual", "text")


def tower_blocks(backbone: ClipBackbone, tower: str) -> tuple[nn.ModuleList, bool]:
    """(residual blocks, batch_first) of one tower: ``tower`` is "visual" or "text"."""
    if tower == "visual":
        return backbone.visual_blocks, bool(getattr(backbone.clip.visual.transformer, "batch_first", True))
    if tower == "text":
        return backbone.text_blocks, bool(getattr(backbone.clip.transformer, "batch_first", True))
    raise ValueError(f"unknown tower '{tower}': choose from {', '.join(TOWERS)}")


def insert_moae(backbone: ClipBackbone, *, n_layers: int = 6, n_experts: int = 3,
                towers: Iterable[str] = TOWERS, **moae_options) -> list[MixtureOfAssessmentExperts]:
    """Replace ``block.mlp`` of the last ``n_layers`` blocks of each tower by a MoAE around it.

    One "MoAE layer" of the paper (Table 5) is one block in *each* listed tower. ``moae_options`` go to
    ``MixtureOfAssessmentExperts`` (freeze_shared, use_sigma, sigma_init, router_init_std, ...).
    Returns the new modules, visual tower first, each tower's blocks in order. Modifies ``backbone``.
    """
    towers = tuple(towers)
    if len(set(towers)) != len(towers):
        raise ValueError(f"towers listed twice: {towers}")
    inserted: list[MixtureOfAssessmentExperts] = []
    for tower in towers:
        blocks, batch_first = tower_blocks(backbone, tower)
        if not 0 <= n_layers <= len(blocks):
            raise ValueError(f"n_layers={n_layers} is outside 0..{len(blocks)} (the {tower} tower's depth): MoAE goes "
                             f"into the last n_layers blocks, and Gamma's recipes ask for the paper's 6 of ViT-B/16's "
                             f"12; on a shallower backbone (test-tiny: 4) set fewer, e.g. --set "
                             f"model.options.n_layers={min(2, len(blocks))}")
        for index in range(len(blocks) - n_layers, len(blocks)):
            block = blocks[index]
            if isinstance(block.mlp, MixtureOfAssessmentExperts):
                raise ValueError(f"{tower} block {index} already holds a MixtureOfAssessmentExperts")
            block.mlp = MixtureOfAssessmentExperts(block.mlp, n_experts, batch_first=batch_first, **moae_options)
            inserted.append(block.mlp)
    return inserted


def find_moae(backbone: ClipBackbone, tower: str | None = None) -> list[MixtureOfAssessmentExperts]:
    """The MoAE modules in ``tower`` (or both towers, visual first), in block order."""
    found = []
    for name in (tower,) if tower else TOWERS:
        blocks, _ = tower_blocks(backbone, name)
        found += [block.mlp for block in blocks if isinstance(block.mlp, MixtureOfAssessmentExperts)]
    return found


def set_forced_expert(modules: Iterable[MixtureOfAssessmentExperts], index: int | None, *,
                      renormalize: bool = False) -> None:
    """Table 6: keep only adaptive expert ``index`` in every module (None restores the mixture)."""
    for module in modules:
        module.set_forced_expert(index, renormalize=renormalize)


@contextlib.contextmanager
def experts_bypassed(modules: Iterable[MixtureOfAssessmentExperts]) -> Iterator[None]:
    """Within the block, every module returns its shared expert only (the original CLIP FFN)."""
    modules = list(modules)
    before = [m.bypass_experts for m in modules]
    for m in modules:
        m.bypass_experts = True
    try:
        yield
    finally:
        for m, value in zip(modules, before):
            m.bypass_experts = value


@contextlib.contextmanager
def routing_recorded(modules: Iterable[MixtureOfAssessmentExperts]) -> Iterator[None]:
    """Within the block, every module keeps its last router probabilities (``last_router_probs``)."""
    modules = list(modules)
    before = [m.record_routing for m in modules]
    for m in modules:
        m.record_routing = True
    try:
        yield
    finally:
        for m, value in zip(modules, before):
            m.record_routing = value
