"""Any input size for open_clip's ViT: position embeddings interpolated to the input's patch grid.

CLIP's ViT has one learned position embedding per patch of its training grid (14 x 14 for ViT-B/16 at
224 px). To run an image at native resolution (the ``full`` view, as CLIP-IQA does), the grid part of the
embedding is resampled bicubically to the input's grid (H/p x W/p); the class token's embedding is kept.

How it is attached (composition; open_clip's transformer is not changed, no code of it is copied): the
vision tower instance gets its own ``_embeds`` attribute, a bound method that calls the class's
``VisionTransformer._embeds`` unchanged. At the training grid it does nothing else. At another grid it
places the interpolated embedding in the instance's ``__dict__`` for the duration of that one call, where
attribute lookup finds it before ``nn.Module.__getattr__`` reaches the registered parameter; parameters,
``state_dict`` keys and every other path stay as they are. Every image path goes through ``_embeds``
(``VisionTransformer.forward``, the GRMP visual prompts, Gamma's experts), so all models accept any size.
A lock serialises the swap across threads; the interpolation is differentiable (training at native
resolution trains the one embedding), and cached per grid at inference.
"""
from __future__ import annotations

import threading
import types

import torch
import torch.nn.functional as F
from torch import nn

_SWAP_LOCK = threading.RLock()


def patch_grid(visual: nn.Module) -> tuple[int, int]:
    """The (rows, cols) patch grid the position embedding was trained for."""
    grid = getattr(visual, "grid_size", None)
    if grid is None:
        n = int(round((visual.positional_embedding.shape[0] - 1) ** 0.5))
        return n, n
    return (int(grid[0]), int(grid[1])) if isinstance(grid, (tuple, list)) else (int(grid), int(grid))


def patch_size(visual: nn.Module) -> int:
    size = visual.conv1.kernel_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def interpolate_position_embedding(embedding: torch.Tensor, grid: tuple[int, int],
                                   new_grid: tuple[int, int]) -> torch.Tensor:
    """[1 + g0*g1, W] -> [1 + n0*n1, W]: the class token's row kept, the grid part resampled bicubically
    (computed in fp32, returned in the embedding's dtype)."""
    if tuple(grid) == tuple(new_grid):
        return embedding
    cls, patches = embedding[:1], embedding[1:]
    width = patches.shape[-1]
    image = patches.float().reshape(1, grid[0], grid[1], width).permute(0, 3, 1, 2)
    resized = F.interpolate(image, size=tuple(new_grid), mode="bicubic", align_corners=False)
    resized = resized.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], width).to(embedding.dtype)
    return torch.cat([cls, resized], dim=0)


def _embeds_any_grid(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``VisionTransformer._embeds`` for pixels of any size (bound to one vision tower)."""
    base = type(self)._embeds
    p = patch_size(self)
    new_grid = (x.shape[-2] // p, x.shape[-1] // p)
    grid = patch_grid(self)
    if new_grid == grid:
        return base(self, x)
    if new_grid[0] < 1 or new_grid[1] < 1:
        raise ValueError(f"input {tuple(x.shape[-2:])} is smaller than one {p}px patch")
    embedding = self._parameters["positional_embedding"]
    cache = self.__dict__.setdefault("_perceptiq_pos_cache", {})
    differentiable = torch.is_grad_enabled() and embedding.requires_grad
    key = (new_grid, embedding.device, embedding.dtype, embedding._version, embedding.data_ptr())
    resized = None if differentiable else cache.get(key)
    if resized is None:
        resized = interpolate_position_embedding(embedding, grid, new_grid)
        if not differentiable:
            cache.clear()  # keep one grid: a stream of odd sizes must not pile up tensors
            cache[key] = resized.detach()
    with _SWAP_LOCK:
        self.__dict__["positional_embedding"] = resized
        try:
            return base(self, x)
        finally:
            del self.__dict__["positional_embedding"]


def enable_any_input_size(model: nn.Module) -> bool:
    """Let ``model.visual`` (open_clip ``VisionTransformer``) take inputs of any size; False where the
    tower has no position embedding to interpolate (e.g. a ResNet). Idempotent."""
    visual = getattr(model, "visual", None)
    if visual is None or not hasattr(type(visual), "_embeds") or not hasattr(visual, "conv1"):
        return False
    if not isinstance(visual._parameters.get("positional_embedding"), torch.Tensor):
        return False
    if isinstance(visual.__dict__.get("_embeds"), types.MethodType):
        return True
    visual.__dict__["_embeds"] = types.MethodType(_embeds_any_grid, visual)
    return True
