"""Batches of whole groups from a crop bank, for the ranking objective (``loss: bce+rank``).

Each step draws ``groups_per_step`` groups (one photograph crop in its 7 versions, crop_bank.py) and
yields every version of each, so the ranking loss always compares versions of the same content. The
target of a version is ``1 - level / 5`` (pristine 1, level 5 0): the distortion level, which is what the
held-out protocol ranks against; a version whose crop the distortion left identical to the pristine
one is labelled pristine. One epoch is ``steps_per_epoch`` steps; ``set_epoch`` reseeds the draw from
(seed, epoch), so a run resumed at an epoch boundary sees exactly the batches the uninterrupted run saw.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import Batch
from .crop_bank import CropBank

MAX_LEVEL = 5


class BankBatches:
    """Iterable of :class:`Batch` ([groups_per_step * V, 3, S, S] normalised pixels, targets, group ids)."""

    def __init__(self, bank: CropBank, group_indices, *, mean, std, groups_per_step: int,
                 steps_per_epoch: int, seed: int = 0, hflip: bool = True):
        self.bank = bank
        self.group_indices = np.asarray(group_indices, dtype=np.int64)
        if self.group_indices.size == 0:
            raise ValueError("the crop bank split has no groups")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.groups_per_step = int(groups_per_step)
        self.steps_per_epoch = int(steps_per_epoch)
        self.seed = int(seed)
        self.hflip = hflip
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def targets_of(self, group: int) -> np.ndarray:
        levels = self.bank.version_levels(group).astype(np.float32)
        levels[~self.bank.meta["changed"][group]] = 0.0     # untouched crop: it *is* the pristine one
        return 1.0 - levels / MAX_LEVEL

    def batch(self, groups: np.ndarray, flips: np.ndarray) -> Batch:
        crops = np.stack([self.bank.crops[g] for g in groups])          # [G, V, S, S, 3] uint8
        n_groups, versions = crops.shape[:2]
        pixels = torch.from_numpy(crops.reshape(n_groups * versions, *crops.shape[2:])).permute(0, 3, 1, 2)
        pixels = (pixels.float() - self.mean) / self.std
        if self.hflip:
            flip_rows = torch.from_numpy(np.repeat(flips, versions))
            pixels[flip_rows] = pixels[flip_rows].flip(-1)
        targets = torch.from_numpy(np.concatenate([self.targets_of(g) for g in groups]))
        ids = torch.arange(n_groups).repeat_interleave(versions)
        return Batch(pixels=pixels.contiguous(), targets=targets, datasets=["crop-bank"] * len(targets),
                     prompt_keys=[None] * len(targets), indices=list(range(len(targets))), groups=ids)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        for _ in range(self.steps_per_epoch):
            groups = rng.choice(self.group_indices, size=self.groups_per_step, replace=False)
            flips = rng.random(self.groups_per_step) < 0.5
            yield self.batch(groups, flips)
