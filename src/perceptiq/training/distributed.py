"""Multi-process training under ``torchrun``: process group, global-batch sharding, gradient averaging.

``torchrun --nproc-per-node N -m perceptiq train --recipe ...`` starts N copies of the command; each
finds its rank in the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``) and :func:`init_from_env` joins the process group (gloo on CPU, nccl on
CUDA, one GPU per process). The design (docs/scale-out.md) makes N processes compute *the same update*
as one process with the same global batch:

* **data** — :class:`GlobalBatchSampler` draws one global order per epoch (seeded by seed + epoch,
  identical on every rank), cuts it into global batches of ``train.batch_size`` and gives rank r the r-th
  contiguous slice of each: per-rank batch = global batch / N, and the union of the ranks' batches of a
  step *is* the single process's batch of that step (run with the same sampler at N = 1);
* **gradients** — an explicit all-reduce (:class:`GlobalGradientMean`) instead of wrapping the model in
  ``DistributedDataParallel``: the trained parameters are a subset (prompts, experts, last blocks), QGR
  takes two gradients with ``torch.autograd.grad`` and the meta step runs on ``torch.func`` — neither
  goes through ``.backward()``, where DDP's reducer hooks live. Each rank's gradient (of its local *mean*
  loss) is weighted by its image count, so unequal shards (a short last batch, a dropped bad image) still
  give exactly the global-batch mean. QGR projects the reduced (global) G_qua and G_sem; the meta step's
  Delta is the mean over all ranks' tasks;
* **evaluation** — sharded (rank r scores items r, r+N, ...) and gathered, so every rank holds the full
  predictions and the metrics are the single-process ones;
* **side effects** — only rank 0 logs, writes ``epochs.jsonl``/``steps.jsonl``, checkpoints and result
  tables (``is_main``).

Exact equality also needs the same per-image preprocessing: random crops/flips are drawn from each
process's generator, so augmented runs are equivalent in distribution, not bit for bit.
"""
from __future__ import annotations

import atexit
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Sampler

from .qgr import GradientList, flatten_grads

log = logging.getLogger(__name__)

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


# -- gradients -----------------------------------------------------------------------------------------
@dataclass
class GlobalGradientMean:
    """``reduce_fn`` for gradient lists: the mean over every image of every rank.

    Each rank holds the gradient of its *local mean* loss over ``count`` images; the result is
    ``sum_r count_r * g_r / sum_r count_r`` (one all-reduce of the flattened, weighted gradients with
    the count appended) — the gradient of the mean loss over the global batch. With the default
    ``count=1`` it is the plain mean over ranks (the meta step with equal task counts per rank).
    ``last_total`` holds the global count of the latest call (0: no rank had data).
    """

    world_size: int = 1
    group: object | None = None
    count: float = 1.0
    last_total: float = field(default=0.0, compare=False)

    def with_count(self, count: float) -> "GlobalGradientMean":
        """The same reduction for a step in which this rank saw ``count`` images (or tasks)."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        return GlobalGradientMean(self.world_size, self.group, float(count))

    def __call__(self, grads: GradientList) -> GradientList:
        if not grads:
            return []
        flat = flatten_grads(grads)
        weighted = torch.cat([flat * self.count, flat.new_tensor([self.count])])
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(weighted, op=dist.ReduceOp.SUM, group=self.group)
        total = float(weighted[-1])
        self.last_total = total
        mean = weighted[:-1] / total if total > 0 else torch.zeros_like(flat)
        out, offset = [], 0
        for g in grads:
            out.append(mean[offset:offset + g.numel()].view_as(g).to(g.dtype))
            offset += g.numel()
        return out


# -- data ------------------------------------------------------------------------------------------------
def shard_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, stop) of rank ``rank``'s contiguous slice of ``n`` things; sizes differ by at most one,
    the first ``n % world_size`` ranks taking the larger share."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class GlobalBatchSampler(Sampler[int]):
    """This rank's indices of a shared per-epoch order, global batch by global batch.

    n_samples: dataset length (items x crops per image). global_batch: the recipe's ``batch_size``,
    divisible by ``world_size``; each DataLoader batch of ``local_batch_size = global_batch / world_size``
    is this rank's slice of one global batch. weights: dataset-balanced sampling with replacement
    (``train.balanced``), else a permutation. A last global batch with fewer images than processes is
    dropped (a rank cannot take part in a step with no image); with one process nothing is dropped.
    """

    def __init__(self, n_samples: int, global_batch: int, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                 weights: torch.Tensor | None = None):
        if global_batch % world_size:
            raise ValueError(f"train.batch_size = {global_batch} is the global batch; it must be divisible by "
                             f"the {world_size} processes (per-process batch = batch_size / processes)")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        if weights is not None and len(weights) != n_samples:
            raise ValueError(f"{len(weights)} sampling weights for {n_samples} samples")
        self.n_samples = n_samples
        self.global_batch = global_batch
        self.local_batch_size = global_batch // world_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.weights = weights
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_order(self) -> list[int]:
        """The epoch's order of dataset indices, the same on every rank."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.weights is None:
            return torch.randperm(self.n_samples, generator=generator).tolist()
        return torch.multinomial(self.weights, self.n_samples, replacement=True, generator=generator).tolist()

    def global_batches(self) -> list[list[int]]:
        order = self.global_order()
        batches = [order[i:i + self.global_batch] for i in range(0, len(order), self.global_batch)]
        if batches and len(batches[-1]) < self.world_size:
            batches.pop()
        return batches

    def __iter__(self):
        for batch in self.global_batches():
            start, stop = shard_bounds(len(batch), self.world_size, self.rank)
            yield from batch[start:stop]

    def __len__(self) -> int:
        full, rest = divmod(self.n_samples, self.global_batch)
        last = shard_bounds(rest, self.world_size, self.rank) if rest >= self.world_size else (0, 0)
        return full * self.local_batch_size + last[1] - last[0]


def balanced_weights(datasets: Sequence[str], crops_per_image: int) -> torch.Tensor:
    """Sampling weight 1 / (images of its dataset) per sample, repeated per crop (``train.balanced``)."""
    counts = Counter(datasets)
    return torch.tensor([1.0 / counts[d] for d in datasets] * crops_per_image, dtype=torch.double)


# -- the context -------------------------------------------------------------------------------------------
@dataclass
class DistributedContext:
    """This process's place in a multi-process run and the collectives the Trainer needs.

    With ``world_size == 1`` every collective is the identity: the same code, sampler and order run as
    one process (the reference a multi-process run equals).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    group: object | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def reduce_gradients(self) -> GlobalGradientMean:
        return GlobalGradientMean(self.world_size, self.group)

    def make_sampler(self, items: Sequence, config) -> GlobalBatchSampler:
        """The training sampler for ``items`` (TrainItems) under ``config`` (a TrainConfig)."""
        n = len(items) * config.crops_per_image
        weights = balanced_weights([it.dataset for it in items], config.crops_per_image) if config.balanced else None
        return GlobalBatchSampler(n, config.batch_size, rank=self.rank, world_size=self.world_size,
                                  seed=config.seed, weights=weights)

    def shard(self, things: Sequence) -> list:
        """This rank's contiguous share of ``things`` (e.g. a meta-batch's tasks)."""
        start, stop = shard_bounds(len(things), self.world_size, self.rank)
        return list(things[start:stop])

    def _collective_tensor(self, values) -> torch.Tensor:
        # nccl reduces CUDA tensors only; gloo reduces CPU tensors
        return torch.as_tensor(values, dtype=torch.float64, device=self.device)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks of a few numbers (epoch loss totals, image counts)."""
        if self.world_size == 1:
            return [float(v) for v in values]
        import torch.distributed as dist

        tensor = self._collective_tensor(list(values))
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)
        return tensor.cpu().tolist()

    def eval_positions(self, n: int) -> range:
        """The evaluation items this rank scores: ``rank, rank + N, ...`` (balanced, any n)."""
        return range(self.rank, n, self.world_size)

    def gather_scores(self, local_scores: np.ndarray, n: int) -> np.ndarray:
        """Every rank's ``eval_positions`` scores -> the full [n] array (NaN stays NaN: a failed image)."""
        positions = list(self.eval_positions(n))
        if len(local_scores) != len(positions):
            raise ValueError(f"rank {self.rank}: {len(local_scores)} scores for {len(positions)} positions")
        full = np.zeros(n, dtype=np.float64)
        full[positions] = local_scores
        if self.world_size == 1:
            return full
        import torch.distributed as dist

        tensor = self._collective_tensor(full)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)  # each slot has one owner
        return tensor.cpu().numpy()

    @torch.no_grad()
    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Make every rank start from rank 0's parameters and buffers (a safety net: builds are seeded)."""
        if self.world_size == 1:
            return
        import torch.distributed as dist

        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.device.type == self.device.type:
                dist.broadcast(tensor.data, src=0, group=self.group)

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier(group=self.group)


_CONTEXT: DistributedContext | None = None


def launched_by_torchrun(environ=os.environ) -> bool:
    return all(name in environ for name in TORCHRUN_ENV)


def init_from_env(device: str | torch.device = "cpu", *, environ=os.environ) -> DistributedContext | None:
    """Join the torchrun process group (once per process); None when not started by torchrun.

    device: the run's device as resolved for one process ("cpu" or "cuda"); under torchrun a CUDA run
    uses ``cuda:LOCAL_RANK`` (one GPU per process) and the nccl backend, a CPU run gloo.
    """
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    if not launched_by_torchrun(environ):
        return None
    import torch.distributed as dist

    rank, world, local_rank = (int(environ[name]) for name in TORCHRUN_ENV)
    device = torch.device(device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; "
                               "start at most one process per GPU (--nproc-per-node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        atexit.register(_shutdown)
    _CONTEXT = DistributedContext(rank=rank, world_size=world, local_rank=local_rank, device=device)
    if _CONTEXT.is_main:
        log.info("distributed training: %d process(es), backend %s", world, backend)
    return _CONTEXT


def current() -> DistributedContext | None:
    """The context :func:`init_from_env` set up in this process, if any."""
    return _CONTEXT


def is_main_process() -> bool:
    """True unless this is a torchrun process other than rank 0."""
    if _CONTEXT is not None:
        return _CONTEXT.is_main
    return os.environ.get("RANK", "0") == "0"


def _shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["DistributedContext", "GlobalBatchSampler", "GlobalGradientMean", "balanced_weights", "current",
           "init_from_env", "is_main_process", "launched_by_torchrun", "shard_bounds"]
