"""Micro-batching: images from concurrent requests share one model forward pass.

Every request puts its model inputs ([3,h,w] each: one per image, or a view's crops) into one queue and
awaits one future per input. A single worker task per model takes the oldest input, then keeps
collecting until it holds ``max_batch`` inputs or ``max_wait_ms`` have passed since that first one
arrived, stacks the inputs of each shape into [B,3,h,w] (the ``full`` view sends images of many sizes;
a pass holds at most ``max_batch`` inputs' worth of ``base_pixels``), runs ``predict`` in an executor
thread (the event loop keeps accepting and decoding uploads meanwhile) and resolves each input's future
with its own score. Requests thus pay at most ``max_wait_ms`` of extra latency and, under load, the
model runs full batches.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..models import ScoreOutput

Predict = Callable[[torch.Tensor], ScoreOutput]


@dataclass(frozen=True)
class ImageScore:
    """One image's result: its score and, for scene-aware models, the scene whose prompts were used."""

    score: float
    scene: str | None


@dataclass
class _Pending:
    pixels: torch.Tensor              # [3,S,S]
    future: asyncio.Future            # resolves to ImageScore


class MicroBatcher:
    """Collects images from concurrent callers into batches of at most ``max_batch`` for ``predict``.

    ``predict(pixels [B,3,S,S]) -> ScoreOutput(scores [B], scenes | None)`` runs on ``executor`` (one
    thread is enough and keeps one forward pass on the device at a time). The worker task starts on
    the first ``score`` call inside the running event loop; ``close()`` stops it.
    """

    def __init__(self, predict: Predict, *, max_batch: int = 32, max_wait_ms: float = 10.0,
                 executor: concurrent.futures.Executor | None = None, base_pixels: int | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.predict = predict
        self.max_batch = max_batch
        self.base_pixels = base_pixels   # pixels of one native-size input (224 x 224); None: no budget
        self.max_wait_s = max_wait_ms / 1000.0
        self._executor = executor
        self._owns_executor = executor is None
        self._pending: collections.deque[_Pending] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.forward_passes = 0  # how many times predict ran: for /v1/models stats and tests
        self.images_scored = 0

    async def score(self, images: Sequence[torch.Tensor]) -> list[ImageScore]:
        """Score preprocessed images [3,S,S] (in order); they may share forward passes with others'."""
        self._ensure_worker()
        loop = asyncio.get_running_loop()
        items = [_Pending(pixels, loop.create_future()) for pixels in images]
        self._pending.extend(items)
        self._arrived.set()
        return list(await asyncio.gather(*(item.future for item in items)))

    async def close(self) -> None:
        """Stop the worker; images still queued get a RuntimeError."""
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the scoring service is shutting down"))
        if self._owns_executor and self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    # internals ------------------------------------------------------------------------------------
    def _ensure_worker(self) -> None:
        """Start the worker in the running loop. A new loop (a test client opened anew) gets a new
        worker: asyncio primitives belong to the loop that created them."""
        loop = asyncio.get_running_loop()
        if self._worker is not None and self._loop is loop and not self._worker.done():
            return
        self._loop = loop
        self._arrived = asyncio.Event()
        self._pending.clear()  # items of a dead loop can never be resolved there
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="perceptiq-predict")
        self._worker = loop.create_task(self._run(), name="perceptiq-micro-batcher")

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            live = [item for item in batch if not item.future.done()]  # a caller may have gone away
            if live:
                await self._forward(live)

    async def _next_batch(self) -> list[_Pending]:
        """Wait for a first image, then for more until the batch is full or ``max_wait_s`` has passed.

        Waiting is on an Event rather than on a queue's ``get`` so that a timeout can never drop an
        item that was being handed over.
        """
        loop = asyncio.get_running_loop()
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = loop.time() + self.max_wait_s
        while len(self._pending) < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        take = min(self.max_batch, len(self._pending))
        return [self._pending.popleft() for _ in range(take)]

    async def _forward(self, batch: list[_Pending]) -> None:
        by_shape: dict[tuple, list[_Pending]] = collections.defaultdict(list)
        for item in batch:
            by_shape[tuple(item.pixels.shape)].append(item)
        for shape, items in by_shape.items():
            per_pass = len(items)
            if self.base_pixels:
                per_pass = max(1, self.max_batch * self.base_pixels // max(shape[-1] * shape[-2], self.base_pixels))
            for start in range(0, len(items), per_pass):
                await self._forward_one_shape(items[start:start + per_pass])

    async def _forward_one_shape(self, batch: list[_Pending]) -> None:
        pixels = torch.stack([item.pixels for item in batch])  # [B,3,S,S]
        loop = asyncio.get_running_loop()
        try:
            out = await loop.run_in_executor(self._executor, self.predict, pixels)
            scores = out.scores.tolist()
            if len(scores) != len(batch):
                raise RuntimeError(f"model returned {len(scores)} scores for a batch of {len(batch)} images")
        except Exception as err:  # the requests in this batch fail; the worker keeps serving others
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err)
            return
        self.forward_passes += 1
        self.images_scored += len(batch)
        scenes = out.scenes if out.scenes is not None else [None] * len(batch)
        for item, score, scene in zip(batch, scores, scenes):
            if not item.future.done():
                item.future.set_result(ImageScore(float(score), scene))
