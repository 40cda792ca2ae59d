"""Deep visual prompts (VPT-deep / DPT; GRMP-IQA Eq. 1, the "visual meta-prompt").

Before every ViT block l, ``n_tokens`` learnable tokens P^l are appended to the block's input sequence;
the block runs on ``[CLS, patches, P^l]`` and the outputs at the prompt positions are dropped, so each
block's output is ``1 + N`` tokens long again and block l+1 receives fresh prompts P^{l+1}:

    [f^l, _, H^l] = Layer^l([f^{l-1}, P^l, H^{l-1}])          (Eq. 1)

How it is attached (by composition, open_clip's transformer is never changed): ``encode_image`` runs
open_clip's own pieces of ``VisionTransformer.forward`` — ``_embeds`` (patch embedding, CLS, positions,
patch dropout, ``ln_pre``), each ``visual_blocks[l]`` called on the prompt-extended sequence, ``_pool`` and
``proj`` — so the backbone's modules and ``state_dict`` keys stay as they are, and ``backbone.encode_image``
stays plain CLIP (a frozen reference path never sees the prompts). With ``n_tokens=0`` the same path runs
and equals ``backbone.encode_image`` (a test guards this against open_clip changes). When the transformer
has gradient checkpointing on, each prompted block (concatenate, block, slice) is checkpointed as one
function, so the recomputation in backward inserts the same prompts.

Layout facts this relies on (open_clip ``VisionTransformer``/``Transformer``): the vision stack is
batch-first ([B, L, W]; the seq-first layout is handled too), the CLS token is position 0 and pooled
from position 0 (``pool_type='tok'``), ``ln_pre`` and patch dropout run *before* the blocks (so prompts
enter after ``ln_pre`` and are never dropped), and vision blocks get no attention mask. Appending the
prompts after the patches rather than between CLS and patches (as VPT writes it) is the same
computation: the blocks add no positional information, and attention without a mask is
permutation-equivariant (a test compares with the VPT placement).

Initialisation follows VPT: uniform in [-v, v], v = sqrt(6 / (3·p² + W)) (Xavier-uniform with the patch
embedding's fan-in 3·p² and the width W as fan-out), seeded.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..backbones import ClipBackbone


def vpt_uniform_bound(patch_size: int, width: int) -> float:
    """VPT's prompt initialisation bound sqrt(6 / (3·p² + W))."""
    return math.sqrt(6.0 / (3 * patch_size * patch_size + width))


def _patch_size(backbone: ClipBackbone) -> int:
    size = backbone.clip.visual.conv1.kernel_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


class DeepVisualPrompts(nn.Module):
    """``n_tokens`` learnable prompt tokens per vision block: parameter ``prompts`` [n_layers, n_tokens, W].

    ``encode_image(pixels [B,3,S,S]) -> [B, D]`` runs the backbone's image encoder with the prompts
    inserted. ``n_tokens=0`` inserts nothing: features equal plain CLIP.
    """

    def __init__(self, backbone: ClipBackbone, n_tokens: int = 1, *, seed: int = 0):
        super().__init__()
        if not isinstance(n_tokens, int) or n_tokens < 0:
            raise ValueError(f"n_tokens must be a non-negative integer, got {n_tokens!r}")
        self._backbone_ref = (backbone,)  # unregistered: the owner of the backbone registers it once
        self.n_tokens = n_tokens
        blocks = backbone.visual_blocks
        width = int(backbone.clip.visual.transformer.width)
        parameter = next(backbone.parameters())
        bound = vpt_uniform_bound(_patch_size(backbone), width)
        generator = torch.Generator().manual_seed(seed)
        initial = (torch.rand(len(blocks), n_tokens, width, generator=generator) * 2 - 1) * bound
        self.prompts = nn.Parameter(initial.to(device=parameter.device, dtype=parameter.dtype))
        self.init_bound = bound

    @property
    def backbone(self) -> ClipBackbone:
        return self._backbone_ref[0]

    @property
    def n_layers(self) -> int:
        return int(self.prompts.shape[0])

    def _sequence_dim(self) -> int:
        return 1 if getattr(self.backbone.clip.visual.transformer, "batch_first", True) else 0

    def _run_block(self, layer: int, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Eq. 1 for one block: append P^l, run the block, drop the prompt outputs. [B,1+N,W] -> same."""
        if self.n_tokens == 0:
            return block(x)
        seq_dim = self._sequence_dim()
        batch = x.shape[1 - seq_dim]
        prompts = self.prompts[layer].to(x.dtype).unsqueeze(1 - seq_dim)   # [1,n,W] or [n,1,W]
        shape = [-1, -1, -1]
        shape[1 - seq_dim] = batch
        y = block(torch.cat([x, prompts.expand(*shape)], dim=seq_dim))
        return y.narrow(seq_dim, 0, x.shape[seq_dim])

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """pixels [B,3,S,S] (CLIP-normalised) -> image features [B, D] with the prompts inserted."""
        visual = self.backbone.clip.visual
        for piece in ("_embeds", "_pool"):
            if not hasattr(visual, piece):
                raise RuntimeError(f"DeepVisualPrompts needs open_clip's VisionTransformer.{piece} "
                                   "to compose prompts; this vision tower does not have it")
        transformer = visual.transformer
        blocks = transformer.resblocks
        if len(blocks) != self.n_layers:
            raise RuntimeError(f"DeepVisualPrompts holds prompts for {self.n_layers} blocks, "
                               f"the backbone has {len(blocks)}")
        x = visual._embeds(pixels)                                 # [B, 1+N, W]
        if self._sequence_dim() == 0:
            x = x.transpose(0, 1)
        use_checkpoint = getattr(transformer, "grad_checkpointing", False) and torch.is_grad_enabled()
        for layer, block in enumerate(blocks):
            if use_checkpoint:
                x = checkpoint(self._run_block, layer, block, x, use_reentrant=False)
            else:
                x = self._run_block(layer, block, x)
        if self._sequence_dim() == 0:
            x = x.transpose(0, 1)
        pooled, _ = visual._pool(x)
        if visual.proj is not None:
            pooled = pooled @ visual.proj
        return F.normalize(pooled, dim=-1) if normalize else pooled

    def forward(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.encode_image(pixels, normalize=normalize)

    def extra_repr(self) -> str:
        return f"n_layers={self.n_layers}, n_tokens={self.n_tokens}, init=uniform(±{self.init_bound:.4f})"
