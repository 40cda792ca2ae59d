"""bf16 copies of a tower's matmul weights for inference under bf16 autocast (made once, not per call).

Why. Under ``torch.autocast(dtype=bfloat16)`` every ``nn.Linear`` and every fused attention call casts
its fp32 weight to bf16 again on every forward: autocast caches a cast only for leaf tensors that require
a gradient, and only within one autocast region, so a frozen inference model pays the whole cast each call.
For ViT-B/16 that is 85 M weights read in fp32 and written in bf16, about 0.5 GB of memory traffic per
forward, which made perceptiq's bf16 model 0.78x a bare open_clip whose weights had been cast to bf16 once
(docs/benchmarks.md, issue 12). Here the cast is done once and reused while the weights stay the same.

What. ``weight_copies_for(tower)`` gives a ``Bf16WeightCopies`` of ``tower`` (the image tower, the one
module that runs on every call; the text features are cached, ``models/text_cache.py``). Its ``active()``
context lets the tower's exact-type ``nn.Linear`` and batch-first self-attention ``nn.MultiheadAttention``
layers compute from bf16 copies of their weights and biases. A copy is used only where autocast would have
cast that same weight to bf16 itself, and nothing else changes:

* bf16 autocast is on for the input's device (a region with autocast off, e.g. the fp32 patch embedding,
  stems, heads and text cache, keeps its fp32 weights), the input is fp32 or bf16;
* the module is in eval mode and no gradient is needed (training and grad-enabled paths run autocast over
  the fp32 master weights, unchanged: the copies are detached and would cut the gradient);
* not inside ``torch.compile`` (a traced graph sees the plain modules);
* the master tensors are the ones the copy was made from, in the same state (object, version counter,
  storage, dtype, device): an optimizer step, ``load_state_dict`` or ``.to()`` makes the copy stale and the
  layer falls back to autocast until ``active()`` recasts it.

Numerics are autocast's: autocast rounds weight, bias and input to bf16 (round to nearest even) and runs
the same GEMM; the copies are the same rounding done earlier, and the input is still rounded by autocast at
the call. Layer norms, the residual stream, the patch embedding and the heads run as the autocast policy
says (``autocast_policy.py``; ``Assessor.predict`` also enters its bf16 residual stream). Attention: the
copies live in a plain ``nn.MultiheadAttention`` built beside the original (``shadow``); the query is cast
to bf16 (what autocast does to it inside the fused kernel) so query and weights share a dtype and torch
takes its fused inference path, as the fp32 module under autocast did. Where that path would not be
taken (``autocast_policy._takes_fused_path``: CUDA, gradients, training, compile) or masks/attention
weights are asked for, the original module runs.

Cost. One bf16 copy of each covered weight and bias: half the fp32 size of the tower's linear and
attention weights (ViT-B/16 image tower: 85.0 M weights, +170 MB beside the 344 MB fp32 masters; the
conv patch embedding, embeddings, ``proj`` and layer norms are not copied). The fp32 masters are kept (a
model may be trained, saved or scored in fp32 later) and are never duplicated in fp32. Copies are made
lazily on the first ``active()`` (so only bf16 inference pays), once per weight state, shared by every
user of the same tower (a weak registry: they go with the tower, never into ``state_dict``, ``deepcopy`` or
pickles of it), and ``release()`` drops them.
"""
from __future__ import annotations

import contextlib
import contextvars
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .autocast_policy import _takes_fused_path

_ACTIVE: contextvars.ContextVar["Bf16WeightCopies | None"] = contextvars.ContextVar(
    "perceptiq_bf16_weight_copies", default=None)
_REGISTRY: "weakref.WeakKeyDictionary[nn.Module, Bf16WeightCopies]" = weakref.WeakKeyDictionary()


def _stamp(tensors: tuple) -> tuple | None:
    """What identifies one state of ``tensors``; None where a tensor has no version counter (an inference
    tensor: in-place edits could not be seen, so no copy is made of it)."""
    try:
        return tuple(None if t is None else (id(t), t._version, t.data_ptr(), t.dtype, t.device)
                     for t in tensors)
    except RuntimeError:
        return None


def _masters(module: nn.Module) -> tuple:
    if isinstance(module, nn.MultiheadAttention):
        return (module.in_proj_weight, module.in_proj_bias, module.out_proj.weight, module.out_proj.bias)
    return (module.weight, module.bias)


@dataclass(frozen=True)
class _Copy:
    stamp: tuple
    linear: tuple | None = None                    # (weight, bias | None) for nn.Linear
    shadow: nn.MultiheadAttention | None = None    # the attention layer's twin holding bf16 tensors


def _usable_copy(module: nn.Module, x: torch.Tensor) -> _Copy | None:
    """``module``'s copy when it may replace autocast's cast of the master weights (module docstring)."""
    if torch.compiler.is_compiling():
        return None
    copies = _ACTIVE.get()
    if copies is None or module.training:
        return None
    entry = copies._entries.get(module)
    if entry is None:
        return None
    device = x.device.type
    if not torch.is_autocast_enabled(device) or torch.get_autocast_dtype(device) != copies.dtype:
        return None
    if x.dtype not in (torch.float32, copies.dtype):
        return None
    masters = _masters(module)
    if torch.is_grad_enabled() and (x.requires_grad or any(t is not None and t.requires_grad for t in masters)):
        return None
    return entry if _stamp(masters) == entry.stamp else None


class Bf16CopyLinear(nn.Linear):
    """``nn.Linear`` that, inside ``Bf16WeightCopies.active()``, multiplies by its bf16 copy instead of
    letting autocast cast the fp32 weight. x [..., in] -> [..., out]; same parameters and state_dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        entry = _usable_copy(self, x)
        if entry is None:
            return super().forward(x)
        weight, bias = entry.linear
        return F.linear(x, weight, bias)      # autocast still rounds x to bf16, as it would have


class Bf16CopyAttention(nn.MultiheadAttention):
    """Batch-first ``nn.MultiheadAttention`` that, inside ``Bf16WeightCopies.active()`` and where torch's
    fused inference kernel runs, runs it on bf16 copies: query [B, L, W] -> ([B, L, W] bf16, None)."""

    def forward(self, query, key, value, *args, **kwargs):
        entry = _usable_copy(self, query) if _plain_self_attention(query, key, value, args, kwargs) else None
        if entry is None or not _takes_fused_path(self, query):
            return super().forward(query, key, value, *args, **kwargs)
        x = query.to(entry.shadow.in_proj_weight.dtype)
        return entry.shadow(x, x, x, need_weights=False)


def _plain_self_attention(query, key, value, args: tuple, kwargs: dict) -> bool:
    """A self-attention call with no mask and no attention weights asked for (open_clip's image tower)."""
    return (query is key and key is value and not args and query.dim() == 3
            and set(kwargs) <= {"need_weights", "attn_mask", "key_padding_mask", "is_causal", "average_attn_weights"}
            and kwargs.get("need_weights", True) is False and kwargs.get("attn_mask") is None
            and kwargs.get("key_padding_mask") is None and not kwargs.get("is_causal", False))


def _eligible(module: nn.Module) -> bool:
    if type(module) in (nn.Linear, Bf16CopyLinear):
        return True
    if type(module) in (nn.MultiheadAttention, Bf16CopyAttention):
        return (module.batch_first and module._qkv_same_embed_dim and module.bias_k is None
                and not module.add_zero_attn)
    return False


def _cast(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if tensor is None else tensor.detach().to(dtype).contiguous()


def _make_copy(module: nn.Module, stamp: tuple, dtype: torch.dtype) -> _Copy:
    with torch.no_grad():
        if isinstance(module, nn.MultiheadAttention):
            shadow = nn.MultiheadAttention(module.embed_dim, module.num_heads, dropout=module.dropout,
                                           bias=module.in_proj_bias is not None, batch_first=True,
                                           device="meta", dtype=dtype)
            shadow.in_proj_weight = nn.Parameter(_cast(module.in_proj_weight, dtype), requires_grad=False)
            shadow.out_proj.weight = nn.Parameter(_cast(module.out_proj.weight, dtype), requires_grad=False)
            if module.in_proj_bias is not None:
                shadow.in_proj_bias = nn.Parameter(_cast(module.in_proj_bias, dtype), requires_grad=False)
            if module.out_proj.bias is not None:
                shadow.out_proj.bias = nn.Parameter(_cast(module.out_proj.bias, dtype), requires_grad=False)
            return _Copy(stamp, shadow=shadow.eval())
        return _Copy(stamp, linear=(_cast(module.weight, dtype), _cast(module.bias, dtype)))


class Bf16WeightCopies:
    """bf16 copies of one tower's linear and attention weights (module docstring). Make it with
    ``weight_copies_for(tower)``; use ``with copies.active(): tower(...)`` under bf16 autocast."""

    def __init__(self, tower: nn.Module, dtype: torch.dtype = torch.bfloat16):
        self.dtype = dtype
        # the tower itself is not referenced (the weak registry must not keep it alive)
        self._modules = [m for m in tower.modules() if _eligible(m)]
        self._entries: dict[nn.Module, _Copy] = {}
        for module in self._modules:
            module.__class__ = Bf16CopyAttention if isinstance(module, nn.MultiheadAttention) else Bf16CopyLinear

    def refresh(self) -> int:
        """Make the missing or stale copies (of fp32 masters only: other dtypes are left to autocast, which
        does not cast them either); returns how many were (re)made."""
        made = 0
        for module in self._modules:
            masters = _masters(module)
            if masters[0].dtype != torch.float32:
                self._entries.pop(module, None)
                continue
            stamp = _stamp(masters)
            entry = self._entries.get(module)
            if stamp is None or (entry is not None and entry.stamp == stamp):
                continue
            self._entries.pop(module, None)          # the stale copy goes before the new one is made
            self._entries[module] = _make_copy(module, stamp, self.dtype)
            made += 1
        return made

    @contextlib.contextmanager
    def active(self):
        """Within this context (this thread / task), the tower's covered layers use their copies where the
        module docstring says; stale copies are remade on entry."""
        self.refresh()
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def release(self) -> None:
        """Drop every copy (the next ``active()`` makes them again)."""
        self._entries = {}

    def tensors(self) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for entry in self._entries.values():
            if entry.linear is not None:
                out += [t for t in entry.linear if t is not None]
            else:
                out += [t for t in (entry.shadow.in_proj_weight, entry.shadow.in_proj_bias,
                                    entry.shadow.out_proj.weight, entry.shadow.out_proj.bias) if t is not None]
        return out

    def nbytes(self) -> int:
        """Memory the copies hold now."""
        return sum(t.numel() * t.element_size() for t in self.tensors())


def weight_copies_for(tower: nn.Module, dtype: torch.dtype = torch.bfloat16) -> Bf16WeightCopies:
    """The ``Bf16WeightCopies`` of ``tower`` in ``dtype``, shared by every caller while ``tower`` lives
    (no copy is made until its first ``active()``)."""
    copies = _REGISTRY.get(tower)
    if copies is None or copies.dtype != dtype:
        copies = _REGISTRY[tower] = Bf16WeightCopies(tower, dtype)
    return copies


def existing_weight_copies(tower: nn.Module) -> Bf16WeightCopies | None:
    """``tower``'s copies if any caller asked for them, else None (makes nothing)."""
    return _REGISTRY.get(tower)
