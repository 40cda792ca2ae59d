"""Text features computed once and reused while the weights they come from stay the same.

The text side of an assessor (fixed prompts, a learned CoOp context, Gamma's text experts) gives the same
features for every image, so at inference they are computed once. A cached value is dropped as soon as one
of the tensors it was computed from is written in place (optimizer steps, ``load_state_dict``, manual edits
bump a tensor's ``_version``) or replaced (``.to(device)``, a new ``nn.Parameter``: a different object).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..backbones.autocast_policy import at_least_float32


def _is_functorch_tensor(tensor: torch.Tensor) -> bool:
    if torch.compiler.is_compiling():   # not traceable by dynamo; torch.func is not combined with compile here
        return False
    try:
        return bool(torch._C._functorch.is_functorch_wrapped_tensor(tensor))
    except AttributeError:   # a torch without functorch internals
        return False


class TextFeatureCache:
    """Values keyed by a name, valid while the given source tensors are unchanged.

    ``get(key, sources, compute)`` returns ``compute()``'s result, computed at most once per key for one
    state of ``sources`` (every tensor the value depends on). Values are fp32 tensors computed with
    autocast off and without gradient, also under ``torch.inference_mode`` (so a cache filled while serving can be read by a later
    grad-enabled forward whose text side is frozen). Callers that need a graph through the text side must
    not use the cache (see ``needs_graph``).
    """

    def __init__(self) -> None:
        self._values: dict[str, torch.Tensor] = {}
        self._stamp: tuple | None = None

    @staticmethod
    def stamp(sources: Iterable[torch.Tensor]) -> tuple:
        return tuple((id(t), t._version) for t in sources)

    @staticmethod
    def needs_graph(sources: Iterable[torch.Tensor]) -> bool:
        """True when the value must be computed afresh: autograd is on and a source is trainable, or a
        source is a ``torch.func`` tensor (inside ``grad``/``vmap``, e.g. the meta step's functional
        calls, where a cached plain tensor would carry no gradient and no batch dimension)."""
        sources = list(sources)
        return (any(_is_functorch_tensor(t) for t in sources)
                or (torch.is_grad_enabled() and any(t.requires_grad for t in sources)))

    def get(self, key: str, sources: Iterable[torch.Tensor], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        sources = list(sources)
        stamp = self.stamp(sources)
        if stamp != self._stamp:
            self._values, self._stamp = {}, stamp
        if key not in self._values:
            # full precision even when the first call comes under bf16 autocast: the features are
            # computed once and enter every score, so their rounding would bias every comparison
            device_type = sources[0].device.type if sources else "cpu"
            with torch.inference_mode(False), torch.no_grad(), torch.autocast(device_type, enabled=False):
                self._values[key] = at_least_float32(compute())
        return self._values[key]

    def clear(self) -> None:
        self._values, self._stamp = {}, None

    def __len__(self) -> int:
        return len(self._values)


class CachesTextFeatures:
    """Mixin for an ``nn.Module`` model holding a ``TextFeatureCache`` as ``self._text_cache``: the cache
    is dropped on ``train()``/``eval()`` and on ``.to(device/dtype)`` (which replaces tensors without
    bumping their versions). List it before ``nn.Module`` in the bases."""

    def clear_text_cache(self) -> None:
        cache = self.__dict__.get("_text_cache")
        if cache is not None:
            cache.clear()

    def train(self, mode: bool = True):
        self.clear_text_cache()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self.clear_text_cache()
        return super()._apply(fn, *args, **kwargs)
