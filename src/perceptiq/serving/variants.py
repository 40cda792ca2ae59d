"""The models a server answers with: the loaded one, plus other (task, scene) variants built on demand.

A request may ask for a task or scene other than the loaded model's (``task=aesthetics``,
``scene=auto``). With a *factory* ``(task, scene) -> Assessor`` the server builds that variant the
first time it is asked for (in a thread, one build per variant at a time), keeps it, and gives it its
own micro-batcher. A variant differs from the loaded model only in its prompts' text features, so
after building it every parameter and buffer that is identical to the loaded model's (same name, shape,
dtype, device and values — the whole CLIP backbone) is replaced by the loaded model's tensor: the copy
is freed and all variants share one set of backbone weights. The comparison is by value, not by model
name, so a model whose variants really differ in some weights keeps its own copies of just those.

With a single *assessor* instead of a factory, requests for another task or scene are refused (422).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .batching import MicroBatcher

AssessorFactory = Callable[[str | None, str | None], "object"]  # (task, scene) -> Assessor
VariantKey = tuple[str, str | None]  # (task, scene)


class VariantUnavailable(Exception):
    """A requested (task, scene) this server cannot serve; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass
class Variant:
    """One servable model: the assessor and the batcher that feeds it."""

    assessor: object
    batcher: MicroBatcher

    @property
    def key(self) -> VariantKey:
        return self.assessor.task, self.assessor.scene


def share_identical_tensors(target: nn.Module, source: nn.Module) -> int:
    """Point ``target``'s parameters and buffers at ``source``'s where name, shape, dtype, device and
    values are equal; returns the number of bytes that no longer need their own copy."""
    source_tensors = dict(source.named_parameters())
    source_tensors.update(source.named_buffers())
    saved = 0
    for name, tensor in [*target.named_parameters(), *target.named_buffers()]:
        shared = source_tensors.get(name)
        if shared is None or shared is tensor or not _same_values(shared, tensor):
            continue
        owner_name, _, leaf = name.rpartition(".")
        owner = target.get_submodule(owner_name)
        setattr(owner, leaf, shared)  # re-registers the parameter/buffer under the same name
        saved += tensor.numel() * tensor.element_size()
    return saved


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)


class ModelVariants:
    """The loaded (default) model and the variants built from the factory, each with a batcher.

    ``resolve(task, scene)`` fills in the loaded model's task/scene for what a request leaves out and
    returns the matching :class:`Variant`, building it first when needed. At most ``max_variants``
    are kept (the default included); a request for one more is answered 503.
    """

    def __init__(self, source, *, max_batch: int, max_wait_ms: float,
                 predict_executor: concurrent.futures.Executor, max_variants: int = 12):
        self._factory: AssessorFactory | None = None
        if hasattr(source, "predict"):
            default = source
        elif callable(source):
            self._factory = source
            default = source(None, None)
        else:
            raise TypeError("create_app needs an Assessor or a factory (task, scene) -> Assessor")
        self._batch_options = {"max_batch": max_batch, "max_wait_ms": max_wait_ms,
                               "executor": predict_executor}
        self.max_variants = max_variants
        self.default = self._wrap(default)
        self._variants: dict[VariantKey, Variant] = {self.default.key: self.default}
        self._build_locks: dict[VariantKey, asyncio.Lock] = {}
        self.bytes_shared = 0

    @property
    def builds_variants(self) -> bool:
        return self._factory is not None

    @property
    def loaded(self) -> list[Variant]:
        return list(self._variants.values())

    def key_for(self, task: str | None, scene: str | None) -> VariantKey:
        """What a request asks for, with the loaded model's task/scene where it says nothing."""
        return (task or self.default.assessor.task, scene or self.default.assessor.scene)

    async def resolve(self, task: str | None, scene: str | None) -> Variant:
        key = self.key_for(task, scene)
        variant = self._variants.get(key)
        if variant is not None:
            return variant
        if self._factory is None:
            dt, ds = self.default.key
            raise VariantUnavailable(
                f"this server serves task={dt} scene={ds or 'none'} only; it was started with a fixed "
                f"model, so it cannot build task={key[0]} scene={key[1] or 'none'}")
        lock = self._build_locks.setdefault(key, asyncio.Lock())
        async with lock:  # concurrent first requests for one variant build it once
            variant = self._variants.get(key)
            if variant is None:
                variant = await self._build(key)
        return variant

    async def close(self) -> None:
        for variant in self._variants.values():
            await variant.batcher.close()

    # internals ------------------------------------------------------------------------------------
    def _wrap(self, assessor) -> Variant:
        size = getattr(assessor, "image_size", None)
        return Variant(assessor, MicroBatcher(assessor.predict, **self._batch_options,
                                              base_pixels=size * size if size else None))

    async def _build(self, key: VariantKey) -> Variant:
        if len(self._variants) >= self.max_variants:
            raise VariantUnavailable(
                f"this server already holds {len(self._variants)} model variants (its limit); "
                f"task={key[0]} scene={key[1] or 'none'} cannot be added", status=503)
        try:
            assessor = await asyncio.to_thread(self._factory, *key)
        except (KeyError, ValueError) as err:  # the model has no such task or scene
            raise VariantUnavailable(str(err).strip('"')) from None
        self.bytes_shared += share_identical_tensors(assessor.module, self.default.assessor.module)
        variant = self._wrap(assessor)
        self._variants[key] = variant
        return variant
