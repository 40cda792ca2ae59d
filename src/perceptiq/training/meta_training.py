"""Meta pre-training of GRMP-IQA's prompts on distortion meta-knowledge tasks (section 3.3).

Tasks. One task per distortion type of every pre-training dataset (TID2013: 24, KADID-10k: 25, or a
synthetic set made by ``perceptiq synthesize``), named ``<dataset>/<type>``. Each task's images are split
once, seeded, into a support part (``support_fraction``, MetaIQA: 80 %) and a query part (the rest),
by image. Targets are the samples' ``.score`` (MOS rescaled to [0, 1] per dataset, higher is better).

Epoch. One epoch is one pass over every task's support images: each task's support part is shuffled and
cut into batches of ``support_batch`` images; meta-batches of ``tasks_per_step`` (k) distinct tasks are
drawn, with probability proportional to the batches a task has left, until no task has any; each chosen
task contributes its next support batch and a fresh random query batch of ``query_batch`` images.
A task whose support part is smaller than one batch contributes one (smaller) batch per epoch.

Update. ``method: meta`` runs the bi-level step of Eq. 4-6 (``perceptiq.training.meta.meta_step``: plain
inner steps with alpha, the outer pseudo-gradient stepped by Adam with lr beta); ``method: erm`` is the
ablation without meta-learning (Table 4 row 5, Table 5 "ERM"): the same images in the same order, the
same Adam, the same schedule and the same number of steps, but one ordinary gradient step on the loss
of all the meta-batch's images. The outer rate decays by ``lr_decay`` every ``decay_every_epochs``
epochs (MetaIQA: 0.9 every 2).

Only the model's ``requires_grad`` parameters are meta-learned (``GRMPModel.set_trainable("prompts")``,
or ``"encoders"`` for Table 4 row 2). Per-epoch support/query losses go to ``epochs.jsonl``, per-step ones
to ``steps.jsonl``, and the result is a checkpoint (``model.safetensors`` + ``model.json``) that
``perceptiq score --model`` loads and fine-tuning recipes take as ``model.init``.

The loop writes its state at every epoch's end (``state/``: parameters, Adam, the epoch planner's and
the global RNG states; ``perceptiq.training.resume``), so ``resume=True`` continues a stopped run from
its last completed epoch with the same result as an uninterrupted one (docs/training.md).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data import LabeledDataset, distortion_tasks
from ..backbones.precision import autocast_context, resolve_precision
from ..models import save_checkpoint
from .config import TrainConfig
from .data import Batch, LabeledImageDataset, TrainItem, capped_workers, make_collate
from .meta import MetaConfig, meta_step, model_loss_fn
from .objectives import get_loss
from .resume import (STATE_DIR, atomic_write_json, atomic_write_lines, check_recorded_run, clear_loop_state,
                     load_loop_state, read_unit_result, record_new_run, run_identity, save_loop_state,
                     write_unit_result)
from .trainer import Trainer
from .transforms import ImageTransform

log = logging.getLogger(__name__)

METHODS = ("meta", "erm")
_PAPER = MetaConfig()   # alpha, beta, epochs (paper); k, support fraction, decay (MetaIQA)


@dataclass(frozen=True)
class MetaTrainingConfig:
    """The ``meta`` section of a meta pre-training recipe (docs/grmp.md, "Meta pre-training")."""

    method: str = "meta"                              # meta (Eq. 4-6) | erm (no meta-learning)
    alpha: float = _PAPER.alpha                       # inner rate, Eq. 4-5
    beta: float = _PAPER.beta                         # outer rate (Adam's lr), Eq. 6
    epochs: int = _PAPER.epochs
    tasks_per_step: int = _PAPER.tasks_per_step       # k
    support_fraction: float = _PAPER.support_fraction
    lr_decay: float = _PAPER.lr_decay
    decay_every_epochs: int = _PAPER.decay_every_epochs
    second_order: bool = _PAPER.second_order
    support_batch: int = 32                           # images per task's support batch
    query_batch: int = 32                             # images per task's query batch
    loss: str = "bce"                                 # Eq. 3
    vectorize: bool = False                           # vmap over tasks (equal batch shapes only)
    seed: int = 0
    workers: int = 0
    precision: str = "fp32"
    train_resize: int | None = None                   # None: random crops at native resolution
    test_view: str = "resize"                         # view for protocol.eval_datasets (imaging views)
    crop: int = 224
    hflip: bool = True
    eval_every: int = 1                               # epochs between evaluations of protocol.eval_datasets
    eval_batch_size: int = 32
    max_steps_per_epoch: int | None = None            # cap for smoke tests

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"meta.method = {self.method!r}: choose one of {', '.join(METHODS)}")
        if not 0 < self.support_fraction < 1:
            raise ValueError(f"meta.support_fraction must lie in (0, 1), got {self.support_fraction}")
        for name in ("epochs", "tasks_per_step", "support_batch", "query_batch", "decay_every_epochs",
                     "eval_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"meta.{name} must be >= 1, got {getattr(self, name)}")
        if self.alpha < 0 or self.beta <= 0:
            raise ValueError(f"meta.alpha must be >= 0 and meta.beta > 0, got {self.alpha}, {self.beta}")
        get_loss(self.loss)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "MetaTrainingConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values or {}) - known)
        if unknown:
            raise ValueError(f"unknown meta-training setting(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(values or {}))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def lr_at(self, epoch: int) -> float:
        """Outer rate of epoch ``epoch`` (0-based): beta * lr_decay ** (epoch // decay_every_epochs)."""
        return self.beta * self.lr_decay ** (epoch // self.decay_every_epochs)


# -- tasks -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistortionTask:
    """One distortion meta-knowledge task: its support and query images."""

    name: str                          # "<dataset>/<distortion type>"
    support: tuple[TrainItem, ...]
    query: tuple[TrainItem, ...]


def split_task(name: str, items: Sequence[TrainItem], support_fraction: float, seed: int) -> DistortionTask:
    """Seeded split of one task's images into support (``support_fraction``) and query (the rest)."""
    if len(items) < 2:
        raise ValueError(f"distortion task {name} has {len(items)} image(s); a task needs at least 2 "
                         "(one support, one query)")
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])   # stable per task, whatever the order
    order = rng.permutation(len(items))
    n_support = min(len(items) - 1, max(1, round(support_fraction * len(items))))
    return DistortionTask(name, tuple(items[i] for i in order[:n_support]),
                          tuple(items[i] for i in order[n_support:]))


def build_distortion_tasks(datasets: Mapping[str, LabeledDataset], support_fraction: float = 0.8,
                           seed: int = 0) -> list[DistortionTask]:
    """One task per (dataset, distortion type); every sample needs ``.distortion`` and a finite score."""
    tasks = []
    for name, dataset in datasets.items():
        for index, sample in enumerate(dataset.samples):
            if not (isinstance(sample.score, float) and math.isfinite(sample.score)):
                raise ValueError(f"{name}: sample {index} ({sample.path}) has no score; meta-training needs "
                                 "labelled images")
        try:
            groups = distortion_tasks(dataset.samples)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        for distortion, samples in groups.items():
            items = [TrainItem(str(s.path), float(s.score), name) for s in samples]
            tasks.append(split_task(f"{name}/{distortion}", items, support_fraction, seed))
    if not tasks:
        raise ValueError("no distortion tasks: the pre-training datasets are empty")
    return tasks


# -- epoch plan --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskBatch:
    """One task's share of a meta-batch: positions into its support and query parts."""

    task: int
    support: tuple[int, ...]
    query: tuple[int, ...]


def plan_epoch(tasks: Sequence[DistortionTask], config: MetaTrainingConfig,
               rng: np.random.Generator) -> list[list[TaskBatch]]:
    """The meta-batches of one epoch (see the module docstring for what an epoch is)."""
    queues = []
    for task in tasks:
        order = rng.permutation(len(task.support)).tolist()
        n_full = len(order) // config.support_batch
        chunks = ([order[i * config.support_batch:(i + 1) * config.support_batch] for i in range(n_full)]
                  if n_full else [order])      # a small task still gives one batch per epoch
        queues.append(chunks)
    meta_batches = []
    while True:
        left = np.array([len(q) for q in queues], dtype=float)
        if left.sum() == 0:
            return meta_batches
        k = min(config.tasks_per_step, int((left > 0).sum()))
        chosen = rng.choice(len(tasks), size=k, replace=False, p=left / left.sum())
        meta_batch = []
        for t in sorted(chosen.tolist()):
            n_query = min(config.query_batch, len(tasks[t].query))
            query = rng.choice(len(tasks[t].query), size=n_query, replace=False).tolist()
            meta_batch.append(TaskBatch(t, tuple(queues[t].pop(0)), tuple(query)))
        meta_batches.append(meta_batch)


# -- the loop ----------------------------------------------------------------------------------------------
@dataclass
class MetaEpochRecord:
    epoch: int
    lr: float
    support_loss: float                # mean over the epoch's tasks of L(theta; S_i)
    query_loss: float                  # meta: mean of L(theta'_i; Q_i); erm: L(theta; Q_i) before the step
    n_steps: int
    n_tasks: int
    seconds: float
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    n_failed: int = 0


@dataclass
class MetaTrainingResult:
    epochs: list[MetaEpochRecord]
    steps: list[dict]
    tasks: list[DistortionTask]
    checkpoint: Path | None = None


class _ItemIndex:
    """All tasks' images as one flat item list, so one DataLoader decodes a whole meta-batch."""

    def __init__(self, tasks: Sequence[DistortionTask]):
        self.items: list[TrainItem] = []
        self.support_start, self.query_start = [], []
        for task in tasks:
            self.support_start.append(len(self.items))
            self.items.extend(task.support)
            self.query_start.append(len(self.items))
            self.items.extend(task.query)

    def positions(self, part: TaskBatch) -> tuple[list[int], list[int]]:
        return ([self.support_start[part.task] + i for i in part.support],
                [self.query_start[part.task] + i for i in part.query])


def _task_tensors(batch: Batch, index: _ItemIndex, plan: list[TaskBatch], device: torch.device):
    """Regroup a decoded meta-batch into per-task ((support pixels, y), (query pixels, y)); tasks that lost
    all their support or query images to decode failures are left out."""
    row_of = {position: row for row, position in enumerate(batch.indices)}
    pixels, targets = batch.pixels.to(device), batch.targets.to(device)
    tasks = []
    for part in plan:
        support, query = index.positions(part)
        rows_s = [row_of[p] for p in support if p in row_of]
        rows_q = [row_of[p] for p in query if p in row_of]
        if rows_s and rows_q:
            tasks.append(((pixels[rows_s], targets[rows_s]), (pixels[rows_q], targets[rows_q])))
    return tasks


def meta_train(model: torch.nn.Module, tasks: Sequence[DistortionTask], config: MetaTrainingConfig, *,
               device: str | torch.device = "cpu", out_dir: str | Path | None = None,
               eval_sets: Mapping[str, Sequence[TrainItem]] | None = None,
               progress: bool = False, resume: bool = False, run_id: str | None = None,
               on_epoch=None) -> MetaTrainingResult:
    """Meta-train (or ERM-train) ``model``'s ``requires_grad`` parameters on ``tasks``.

    model: a module whose ``forward(pixels [B,3,S,S])`` returns a ``ScoreOutput`` (scores [B] in [0, 1]
        for the BCE of Eq. 3) and that exposes ``.backbone`` (for the image normalisation).
    eval_sets: optional {name: items} scored (SRCC/PLCC) every ``eval_every`` epochs and at the end.
    out_dir: logs and the state written at every epoch's end (``out_dir/state``); ``resume=True`` continues
        from that state when it belongs to run ``run_id``. on_epoch: called with each epoch's record.
    """
    from .distributed import init_from_env

    distributed = init_from_env(device)  # None unless started by torchrun
    if distributed is not None:
        if config.method != "meta":
            raise ValueError("the ERM ablation of meta-training runs in one process; drop torchrun for it")
        if resume:
            raise ValueError("resuming a torchrun run is not supported: each process's RNG state would have "
                             "to be saved; rerun it without --resume")
        device = distributed.device
    is_main = distributed is None or distributed.is_main
    device = torch.device(device)
    out = Path(out_dir) if out_dir is not None and is_main else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model.to(device)
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("meta_train: the model has no trainable parameters (set_trainable first)")
    optimizer = torch.optim.Adam(list(params.values()), lr=config.beta)
    objective = get_loss(config.loss)
    loss_fn = model_loss_fn(model, objective)
    precision = resolve_precision(config.precision, device)
    info = model.backbone.info
    transform = ImageTransform(info.mean, info.std, resize=config.train_resize, crop=config.crop, train=True,
                               hflip=config.hflip)
    evaluator = Trainer(TrainConfig(eval_batch_size=config.eval_batch_size, workers=config.workers,
                                    precision=config.precision, test_view=config.test_view), device=device,
                        distributed=distributed)
    _, eval_transform = evaluator.transforms(model)
    index = _ItemIndex(tasks)
    dataset = LabeledImageDataset(index.items, transform)
    epochs: list[MetaEpochRecord] = []
    steps: list[dict] = []
    generators = {"plan": rng}
    saved = load_loop_state(out / STATE_DIR, run_id=run_id) if resume and out is not None else None
    if saved is not None:
        saved.restore(params, optimizer, generators)
        epochs = [MetaEpochRecord(**record) for record in saved.progress["epochs"]]
        steps = saved.progress["steps"]
        atomic_write_lines(out / "epochs.jsonl", [dataclasses.asdict(r) for r in epochs])  # drop later lines
        log.info("resuming meta-training after epoch %d of %d", saved.epoch, config.epochs)
    elif out is not None:   # a fresh run: nothing of an earlier run's state or log may remain
        clear_loop_state(out / STATE_DIR)
        (out / "epochs.jsonl").unlink(missing_ok=True)
    for epoch in range(saved.epoch if saved is not None else 0, config.epochs):
        lr = config.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        plan = plan_epoch(tasks, config, rng)[:config.max_steps_per_epoch]  # the same on every rank (same seed)
        if distributed is not None:  # each rank takes its share of every meta-batch's tasks
            plan = [distributed.shard(meta_batch) for meta_batch in plan]
        loader = DataLoader(dataset, batch_sampler=[sum((sum(index.positions(p), []) for p in mb), [])
                                                    for mb in plan],
                            collate_fn=make_collate(index.items), num_workers=capped_workers(config.workers))
        iterator = loader
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(loader, desc=f"meta epoch {epoch + 1}/{config.epochs}", leave=False)
        model.train()
        start, support_losses, query_losses, n_failed, n_steps = time.perf_counter(), [], [], 0, 0
        for meta_batch, batch in zip(plan, iterator):
            n_failed += len(batch.failures)
            task_data = _task_tensors(batch, index, meta_batch, device)
            if not task_data:
                continue
            with autocast_context(precision, device):
                if config.method == "meta":
                    # DDP: the outer update is the mean of (theta - theta'') over every rank's tasks
                    reduce_fn = (distributed.reduce_gradients.with_count(len(task_data))
                                 if distributed is not None else None)
                    result = meta_step(params, task_data, loss_fn, alpha=config.alpha, outer_optimizer=optimizer,
                                       second_order=config.second_order, vectorize=config.vectorize,
                                       reduce_fn=reduce_fn)
                    step_s, step_q = result.support_losses, result.query_losses
                else:
                    step_s, step_q = _erm_step(model, params, optimizer, task_data, objective)
            support_losses += step_s
            query_losses += step_q
            n_steps += 1
            steps.append({"epoch": epoch, "step": len(steps), "lr": lr, "n_tasks": len(task_data),
                          "support_loss": float(np.mean(step_s)), "query_loss": float(np.mean(step_q))})
        record = MetaEpochRecord(epoch + 1, lr, _mean(support_losses), _mean(query_losses), n_steps,
                                 len(support_losses), time.perf_counter() - start, n_failed=n_failed)
        if eval_sets and ((epoch + 1) % config.eval_every == 0 or epoch == config.epochs - 1):
            record.metrics, _ = evaluator.evaluate(model, dict(eval_sets), eval_transform)
        epochs.append(record)
        _log_epoch(record, out)
        if out is not None:
            save_loop_state(out / STATE_DIR, epoch=epoch + 1, parameters=params, optimizer=optimizer,
                            generators=generators, run_id=run_id,
                            progress={"epochs": [dataclasses.asdict(r) for r in epochs], "steps": steps})
        if on_epoch is not None:
            on_epoch(record)
    model.eval()
    if out is not None:
        with open(out / "steps.jsonl", "w") as handle:
            for step in steps:
                handle.write(json.dumps(step) + "\n")
    return MetaTrainingResult(epochs, steps, list(tasks))


def _erm_step(model, params: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer, task_data,
              objective) -> tuple[list[float], list[float]]:
    """ERM ablation: one gradient step on the loss of every image of the meta-batch (supports and queries
    pooled); the per-task support/query losses are reported at the parameters before the step."""
    optimizer.zero_grad(set_to_none=True)
    pixels = torch.cat([t for (s, _), (q, _) in task_data for t in (s, q)])
    targets = torch.cat([t for (_, ys), (_, yq) in task_data for t in (ys, yq)])
    scores = model(pixels).scores
    objective(scores, targets).backward()
    optimizer.step()
    support_losses, query_losses, offset = [], [], 0
    with torch.no_grad():
        for (s, ys), (q, yq) in task_data:
            support_losses.append(float(objective(scores[offset:offset + len(s)], ys)))
            offset += len(s)
            query_losses.append(float(objective(scores[offset:offset + len(q)], yq)))
            offset += len(q)
    return support_losses, query_losses


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _log_epoch(record: MetaEpochRecord, out: Path | None) -> None:
    summary = ", ".join(f"{name}: SRCC {m['srcc']:.4f}" for name, m in record.metrics.items())
    log.info("meta epoch %d lr %.3g support %.5f query %.5f (%d steps) %s", record.epoch, record.lr,
             record.support_loss, record.query_loss, record.n_steps, summary)
    if out is not None:
        with open(out / "epochs.jsonl", "a") as handle:
            handle.write(json.dumps(dataclasses.asdict(record), default=float) + "\n")


# -- recipes -----------------------------------------------------------------------------------------------
def run_meta_recipe(recipe: dict, roots: Mapping[str, str | Path], out_dir: str | Path, *,
                    device: str | torch.device = "cpu", progress: bool = False,
                    missing: str = "error", resume: bool = False) -> MetaTrainingResult:
    """Run a ``protocol.kind: meta`` recipe: build the model (``model`` section, incl. ``init`` and
    ``trainable``), the tasks of ``protocol.datasets``, meta-train with the ``meta`` section, evaluate on
    ``protocol.eval_datasets`` (whole datasets, zero-shot) and save ``out_dir/model.safetensors``.

    ``resume``: continue the run recorded in ``out_dir`` (same recipe, roots and ``missing``, else
    ``ResumeMismatchError``): from its last completed epoch, or, when it had finished, its result read
    back."""
    from .experiment import build_run_model, load_datasets, to_items

    protocol = recipe.get("protocol") or {}
    if protocol.get("kind") != "meta":
        raise ValueError(f"recipe {recipe.get('name')}: protocol.kind is {protocol.get('kind')!r}, "
                         "meta pre-training needs 'meta' (use `perceptiq train` for the others)")
    config = MetaTrainingConfig.from_dict(recipe.get("meta"))
    identity = run_identity(recipe, roots, missing=missing)
    run_id = check_recorded_run(out_dir, identity) if resume else None   # refused before any work
    names = list(protocol.get("datasets") or [])
    eval_names = list(protocol.get("eval_datasets") or [])
    if not names:
        raise ValueError(f"recipe {recipe.get('name')}: protocol.datasets lists no pre-training dataset")
    datasets = load_datasets(list(dict.fromkeys(names + eval_names)), roots, missing=missing)
    tasks = build_distortion_tasks({n: datasets[n] for n in names}, config.support_fraction, config.seed)
    from .distributed import is_main_process

    bundle = build_run_model(recipe, device)   # refuses bad model options before the run folder exists
    out = Path(out_dir)
    is_main = is_main_process()  # under torchrun only rank 0 writes files
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    if run_id is None:
        run_id = record_new_run(out, identity, write=is_main)
    done = read_unit_result(out, run_id=run_id) if resume else None
    if done is not None:
        log.info("meta pre-training in %s finished earlier; result read back", out)
        steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]
        return MetaTrainingResult([MetaEpochRecord(**e) for e in done["epochs"]], steps, list(tasks),
                                  checkpoint=out / "model.safetensors")
    if is_main:
        atomic_write_json(out / "recipe.json", recipe)
        (out / "tasks.json").write_text(json.dumps(
            [{"name": t.name, "support": [i.path for i in t.support], "query": [i.path for i in t.query]}
             for t in tasks], indent=1))
    module = bundle.module
    eval_sets = {n: to_items(datasets[n].samples, datasets[n], module) for n in eval_names}
    log.info("meta pre-training (%s) on %d tasks of %s", config.method, len(tasks), ", ".join(names))
    result = meta_train(module, tasks, config, device=device, out_dir=out, eval_sets=eval_sets,
                        progress=progress, resume=resume, run_id=run_id)
    state = module.trainable_state_dict()
    last = result.epochs[-1]
    if not is_main:
        return result
    result.checkpoint = save_checkpoint(out / "model.safetensors", state, {
        **bundle.config, "trained_parameters": sorted(state), "recipe": recipe.get("name"),
        "view": config.test_view, "meta": config.to_dict(), "final_support_loss": last.support_loss, "final_query_loss": last.query_loss,
        "final_metrics": last.metrics, "tasks": [t.name for t in tasks],
    })
    write_unit_result(out, {"epochs": [dataclasses.asdict(e) for e in result.epochs]}, run_id=run_id)
    clear_loop_state(out / STATE_DIR)
    return result
