"""Decode and preprocess images in DataLoader workers, in input order, never crashing on a bad file.

Design (docs/inference.md, "Loading"): a map-style ``Dataset`` over a list of paths. The DataLoader's
sequential sampler hands batch k to worker k mod N and delivers batches back in order, so results come
out in the order of the input list and each path is read exactly once, with no sharding code of our own.
The price is that the listing must finish before scoring starts; listing is far cheaper than scoring.

Where decoding runs (docs/inference.md, "Decode placement"), chosen by :func:`auto_decode_plan`:

* model on the CPU: in this process, the batch's images decoded by one thread per usable core, *between*
  model calls. Decoding and the model then take turns at all the cores instead of fighting over them:
  torch's intra-op threads wait at a barrier for the slowest one, so a decode process that preempts one
  of them stalls the whole matmul (on a 2-core AMX machine two decode processes beside two torch
  threads cost a third of the rate). Turn-taking costs exactly the decode work, spread over the cores.
  Pillow releases the GIL while it decodes and resamples, so the threads run in parallel.
* model on a GPU: DataLoader worker processes decode ahead of the GPU on all cores but one (the one
  that feeds the GPU), as many as there are batches to decode.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..imaging.decode import ImageDecodeError, load_rgb
from ..imaging.views import ViewInput

# RGB image -> one [3,H,W] tensor, or a ViewInput (a view's K inputs and their boxes).
Preprocess = Callable[[Image.Image], "torch.Tensor | ViewInput"]

# One item: (index in the input list, path as given, [3,H,W] tensor / ViewInput or None, error or None).
ScoringItem = tuple[int, str, "torch.Tensor | ViewInput | None", str | None]

_WHOLE = (0.0, 0.0, 1.0, 1.0)

# Upper bound on automatically chosen decode worker processes (GPU models): each holds a Python
# interpreter with torch imported (~0.3 GB); 32 decode ~5,000 photos/s, past what one GPU scores.
MAX_AUTO_WORKERS = 32


class ImagePathDataset(Dataset):
    """Items ``(index, path, pixels [3,H,W] or ViewInput | None, error | None)`` for a fixed list of paths.

    ``__getitem__`` never raises for a bad file: decode failures carry ``ImageDecodeError``'s message,
    anything else raised by ``preprocess`` becomes ``"preprocess failed (Type: message)"``.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        preprocess: Preprocess,
        *,
        target_short_side: int | None = 224,
        max_pixels: int = 200_000_000,
    ):
        self.paths = [os.fspath(p) for p in paths]
        self.preprocess = preprocess
        self.target_short_side = target_short_side
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> ScoringItem:
        path = self.paths[index]
        try:
            image = load_rgb(path, target_short_side=self.target_short_side, max_pixels=self.max_pixels)
        except ImageDecodeError as err:
            return index, path, None, str(err)
        try:
            pixels = self.preprocess(image)
        except Exception as err:  # a worker must survive whatever one image does to the transform
            return index, path, None, f"preprocess failed ({type(err).__name__}: {err})"
        return index, path, pixels, None


@dataclass
class ScoringBatch:
    """One batch of inputs, with the images that failed kept aside.

    ``indices``/``paths``: every item of the batch, in input order (length B). ``inputs``: the G good
    items' :class:`ViewInput` (K model inputs each), in the order of ``good_positions`` (positions within
    the batch). ``pixels``: every good item's inputs concatenated, ``[sum K, 3, h, w]``, when they share
    one shape (always, except for the ``full`` view); with one input per item that is ``[G,3,H,W]``.
    When G is 0 it is an empty ``[0,3,0,0]`` tensor; ``None`` when shapes differ. ``errors``: batch
    position -> error message for the others.
    """

    indices: list[int]
    paths: list[str]
    pixels: torch.Tensor | None
    good_positions: list[int]
    errors: dict[int, str] = field(default_factory=dict)
    inputs: list[ViewInput] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def good_mask(self) -> torch.Tensor:
        """``[B]`` bool, True where the item decoded."""
        mask = torch.zeros(len(self.indices), dtype=torch.bool)
        mask[self.good_positions] = True
        return mask

    def pin_memory(self) -> "ScoringBatch":
        """Called by the DataLoader when ``pin_memory=True``; only the pixel tensor is pinned."""
        if self.pixels is not None:
            self.pixels = self.pixels.pin_memory()
        return self

    def results(self, good_scores: Sequence[float]) -> list[tuple[int, str, float | None, str | None]]:
        """``(index, path, score | None, error | None)`` for every item, in input order, given one
        score per good item (in ``good_positions`` order)."""
        if len(good_scores) != len(self.good_positions):
            raise ValueError(f"got {len(good_scores)} scores for {len(self.good_positions)} decoded images")
        score_at = dict(zip(self.good_positions, good_scores))
        return [
            (index, path, float(score_at[pos]) if pos in score_at else None, self.errors.get(pos))
            for pos, (index, path) in enumerate(zip(self.indices, self.paths))
        ]


def collate_scoring_batch(items: Sequence[ScoringItem]) -> ScoringBatch:
    """Stack the decoded inputs of a list of dataset items; failures go to ``errors``.

    Plain ``[3,H,W]`` tensors (a preprocess that returns one tensor) must share one shape; a
    :class:`ViewInput` per item may differ in size (``full``), and then ``pixels`` is None."""
    good_positions = [pos for pos, item in enumerate(items) if item[2] is not None]
    outputs = [items[pos][2] for pos in good_positions]
    if any(isinstance(o, torch.Tensor) for o in outputs):
        shapes = {tuple(o.shape) for o in outputs if isinstance(o, torch.Tensor)}
        if len(shapes) > 1:
            raise ValueError(
                f"preprocess returned tensors of different shapes {sorted(shapes)} in one batch "
                f"(first path {items[good_positions[0]][1]!r}); it must produce a fixed size"
            )
    inputs = [o if isinstance(o, ViewInput) else ViewInput(o.unsqueeze(0), [_WHOLE]) for o in outputs]
    if not inputs:
        pixels = torch.empty((0, 3, 0, 0))
    elif len({tuple(vi.pixels.shape[1:]) for vi in inputs}) == 1:
        pixels = inputs[0].pixels if len(inputs) == 1 else torch.cat([vi.pixels for vi in inputs])
    else:
        pixels = None
    return ScoringBatch(
        indices=[item[0] for item in items],
        paths=[item[1] for item in items],
        pixels=pixels,
        good_positions=good_positions,
        errors={pos: item[3] for pos, item in enumerate(items) if item[2] is None},
        inputs=inputs,
    )


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's or ``taskset``'s share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class DecodePlan:
    """Where images are decoded: ``workers`` DataLoader processes decoding ahead of the model, or (0) this
    process with ``threads`` threads decoding each batch between model calls."""

    workers: int
    threads: int

    def describe(self) -> str:
        if self.workers:
            return f"{self.workers} decode process{'es' if self.workers > 1 else ''} ahead of the model"
        return f"in process, {self.threads} decode thread{'s' if self.threads > 1 else ''} between model calls"


def auto_decode_plan(n_items: int, batch_size: int, device: torch.device | str = "cpu",
                     num_workers: int | None = None, cpus: int | None = None) -> DecodePlan:
    """The decode placement for a run (module docstring): given ``num_workers`` is kept; ``None`` picks
    0 (in-process threads) for a CPU model and ``min(MAX_AUTO_WORKERS, cpus - 1, batches)`` (at least
    1) for a GPU one. In-process decoding uses ``min(cpus, batch_size)`` threads."""
    cpus = cpus or usable_cpus()
    n_batches = -(-n_items // batch_size) if n_items else 0
    if num_workers is None:
        if torch.device(device).type == "cpu" or n_batches == 0:
            num_workers = 0
        else:
            num_workers = max(1, min(MAX_AUTO_WORKERS, cpus - 1, n_batches))
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    return DecodePlan(workers=num_workers, threads=1 if num_workers else max(1, min(cpus, batch_size)))


def auto_num_workers(n_items: int, batch_size: int, device: torch.device | str = "cpu") -> int:
    """Decode worker processes :func:`auto_decode_plan` picks (0: in-process threads)."""
    return auto_decode_plan(n_items, batch_size, device).workers


class InProcessScoringLoader:
    """Batches of :class:`ScoringBatch` decoded in the calling process, ``threads`` images at a time.

    A batch is decoded when the consumer asks for it, i.e. after the previous batch went through the
    model, so decoding and the model never compete for cores. Same items, order and failure handling as
    the DataLoader over the same dataset.
    """

    def __init__(self, dataset: ImagePathDataset, batch_size: int, threads: int):
        self.dataset, self.batch_size, self.threads = dataset, batch_size, max(1, threads)

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[ScoringBatch]:
        n = len(self.dataset)
        if self.threads == 1:
            for start in range(0, n, self.batch_size):
                yield collate_scoring_batch([self.dataset[i] for i in range(start, min(n, start + self.batch_size))])
            return
        with ThreadPoolExecutor(self.threads, thread_name_prefix="perceptiq-decode") as pool:
            for start in range(0, n, self.batch_size):
                items = list(pool.map(self.dataset.__getitem__, range(start, min(n, start + self.batch_size))))
                yield collate_scoring_batch(items)


def make_scoring_loader(
    paths: Sequence[str | os.PathLike],
    *,
    preprocess: Preprocess,
    batch_size: int = 32,
    num_workers: int | None = None,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
    target_short_side: int | None = 224,
    max_pixels: int = 200_000_000,
    device: torch.device | str = "cpu",
    decode_threads: int | None = None,
) -> DataLoader | InProcessScoringLoader:
    """An iterable of :class:`ScoringBatch` over ``paths``, in input order.

    ``num_workers=None`` picks :func:`auto_decode_plan` for a model on ``device``; 0 decodes in the
    calling process with ``decode_threads`` threads (default: one per usable CPU, at most the batch
    size), between model calls; N > 0 starts N DataLoader worker processes.
    ``prefetch_factor`` (batches read ahead per worker) is passed only when there are workers.
    ``preprocess`` turns an RGB PIL image into ``[3,H,W]`` (e.g. a ``functools.partial`` of
    ``clip_preprocess``); it must be picklable when workers are started with spawn.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    plan = auto_decode_plan(len(paths), batch_size, device, num_workers)
    num_workers = plan.workers
    dataset = ImagePathDataset(paths, preprocess, target_short_side=target_short_side, max_pixels=max_pixels)
    if num_workers == 0:
        return InProcessScoringLoader(dataset, batch_size, decode_threads or plan.threads)
    extra = {"prefetch_factor": prefetch_factor} if num_workers > 0 and prefetch_factor is not None else {}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,  # input order in, input order out
        num_workers=num_workers,
        collate_fn=collate_scoring_batch,
        pin_memory=pin_memory,
        persistent_workers=False,
        **extra,
    )
