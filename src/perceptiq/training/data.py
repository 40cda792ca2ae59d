"""Training and evaluation data: labelled samples -> decoded, transformed, batched tensors.

Each item carries the sample's target (score in [0, 1]), its dataset and its prompt key (the model
decides which prompts a sample's dataset uses). A file that cannot be decoded is dropped from its batch
and counted, never fatal: a long run does not die on one bad image.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

from ..imaging.decode import ImageDecodeError
from .transforms import ImageTransform

log = logging.getLogger(__name__)
_reported_worker_caps: set[tuple[int, int]] = set()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def capped_workers(requested: int) -> int:
    """DataLoader workers: a recipe's ``workers``, at most the CPUs this process may use.

    Recipes ask for 8 decode workers (a GPU machine's share); on a 2-core machine 8 processes only compete
    for the same cores and torch warns twice per loader. Said once per process and cap, at INFO."""
    cpus = usable_cpus()
    if requested <= cpus:
        return requested
    if (requested, cpus) not in _reported_worker_caps:
        _reported_worker_caps.add((requested, cpus))
        log.info("workers: %d asked for, %d CPU(s) usable here: using %d", requested, cpus, cpus)
    return cpus


@dataclass(frozen=True)
class TrainItem:
    """A sample as the trainer sees it: where the image is, its target, and its prompt key."""

    path: str
    target: float
    dataset: str
    prompt_key: str | None = None


@dataclass
class Batch:
    pixels: torch.Tensor              # [B,3,S,S]; with a multi-input test view [sum K,3,S,S]
    targets: torch.Tensor             # [B]
    datasets: list[str]
    prompt_keys: list[str | None]
    indices: list[int]                # positions in the item list
    failures: dict[str, str] = field(default_factory=dict)  # path -> error, for dropped items
    groups: torch.Tensor | None = None  # [B] ids: versions of one image share one (ranking losses)
    input_counts: list[int] | None = None  # per item, its test view's K inputs (None: one input each)

    def __len__(self) -> int:
        return len(self.indices)


class LabeledImageDataset(Dataset):
    """``crops_per_image`` copies of every item per epoch (GRMP's "10 random crops per image"); each copy
    draws its own crop, since the transform draws positions from the process's generator at each call.
    The transform is told the item's dataset (per-dataset pre-resize)."""

    def __init__(self, items: Sequence[TrainItem], transform: ImageTransform, crops_per_image: int = 1):
        if crops_per_image < 1:
            raise ValueError(f"crops_per_image must be >= 1, got {crops_per_image}")
        self.items = list(items)
        self.transform = transform
        self.crops_per_image = crops_per_image

    def __len__(self) -> int:
        return len(self.items) * self.crops_per_image

    def __getitem__(self, index: int):
        position = index % len(self.items)
        item = self.items[position]
        try:
            pixels = self.transform(item.path, dataset=item.dataset)
        except ImageDecodeError as err:
            return position, None, str(err)
        return position, pixels, None


def make_collate(items: Sequence[TrainItem]):
    return _Collate(list(items))


class _Collate:
    """Picklable collate that stacks the decoded items and reports the dropped ones."""

    def __init__(self, items: list[TrainItem]):
        self.items = items

    def __call__(self, records) -> Batch:
        good = [(pos, px) for pos, px, _ in records if px is not None]
        failures = {self.items[pos].path: err for pos, px, err in records if px is None}
        positions = [pos for pos, _ in good]
        counts = None
        if good and good[0][1].dim() == 4:   # a test view's K inputs per item: [K,3,S,S] each
            counts = [int(px.shape[0]) for _, px in good]
            pixels = torch.cat([px for _, px in good])
        else:
            pixels = torch.stack([px for _, px in good]) if good else torch.empty(0, 3, 0, 0)
        chosen = [self.items[p] for p in positions]
        return Batch(
            pixels=pixels,
            targets=torch.tensor([it.target for it in chosen], dtype=torch.float32),
            datasets=[it.dataset for it in chosen],
            prompt_keys=[it.prompt_key for it in chosen],
            indices=positions,
            failures=failures,
            input_counts=counts,
        )


def dataset_balanced_sampler(items: Sequence[TrainItem], crops_per_image: int, num_samples: int | None,
                             generator: torch.Generator) -> Sampler:
    """Every dataset drawn equally often (an option; the paper concatenates, so AVA dominates)."""
    counts = Counter(it.dataset for it in items)
    weights = torch.tensor([1.0 / counts[it.dataset] for it in items] * crops_per_image, dtype=torch.double)
    return WeightedRandomSampler(weights, num_samples or len(weights), replacement=True, generator=generator)


def make_loader(items: Sequence[TrainItem], transform: ImageTransform, *, batch_size: int, shuffle: bool,
                num_workers: int = 0, seed: int = 0, crops_per_image: int = 1, balanced: bool = False,
                sampler: Sampler | None = None, drop_last: bool = False) -> DataLoader:
    """A DataLoader of :class:`Batch`; seeded so a run repeats exactly with the same seed."""
    dataset = LabeledImageDataset(items, transform, crops_per_image)
    generator = torch.Generator().manual_seed(seed)
    if sampler is None and balanced:
        sampler = dataset_balanced_sampler(items, crops_per_image, None, generator)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=capped_workers(num_workers),
        collate_fn=make_collate(items),
        generator=generator,
        drop_last=drop_last,
        persistent_workers=False,
    )
