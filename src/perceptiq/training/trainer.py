"""One trainer for every recipe: epochs of (batch -> model -> objective -> [QGR] -> optimizer), metrics
on the test parts per epoch, a checkpoint at the end. Methods differ only in configuration.

With an ``out_dir`` the trainer also writes its state at every epoch's end (``out_dir/state``, see
``perceptiq.training.resume``), so ``fit(..., resume=True)`` continues a killed run from its last
completed epoch and ends with what an uninterrupted run ends with.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..evaluation.metrics import compute_metrics
from ..backbones.precision import autocast_context, resolve_precision
from .config import TrainConfig
from .data import Batch, TrainItem, make_loader
from .objectives import GROUPED_LOSSES, get_loss
from ..imaging.views import pool_scores
from .resume import STATE_DIR, atomic_write_lines, clear_loop_state, load_loop_state, save_loop_state
from .transforms import ImageTransform, ViewEvalTransform, make_eval_transform

log = logging.getLogger(__name__)


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train_loss: float
    n_images: int
    seconds: float
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # eval set -> metrics
    n_failed: int = 0


@dataclass
class TrainResult:
    epochs: list[EpochRecord]
    steps: list[dict]                       # per-step log (loss; QGR angle and dot)
    final_metrics: dict[str, dict[str, float]]
    failures: dict[str, str]                # path -> error for images dropped during training
    final_predictions: dict[str, np.ndarray] = field(default_factory=dict)  # eval set -> last epoch's scores

    @property
    def final_loss(self) -> float:
        return self.epochs[-1].train_loss


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(params: Sequence[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _accepts_prompt_keys(model: nn.Module) -> bool:
    return "prompt_keys" in inspect.signature(model.forward).parameters


class Trainer:
    """Train ``model`` (only its ``requires_grad`` parameters) on ``train_items``.

    ``reduce_gradients`` (DDP) averages gradient lists across processes; QGR applies it to G_qua and
    G_sem before projecting, the standard step after backward. A reducer with ``with_count(n)`` is told
    each step's local image count, so unequal shards still average over the global batch.

    ``distributed`` (a ``perceptiq.training.distributed.DistributedContext``; torchrun) supplies the
    hooks not given (gradient mean, rank-0 side effects, the global-batch sampler whose
    ``local_batch_size`` sets the per-process batch), sums the epoch's loss and counts over processes,
    keeps a process with an empty batch in step with the others, and shards evaluation
    (docs/scale-out.md).

    ``out_dir``: logs (``epochs.jsonl``, ``steps.jsonl``) and the resume state (``state/``, written at
    every epoch's end by the main process). ``run_id`` ties that state to one run
    (``perceptiq.training.resume.record_new_run``); ``fit(resume=True)`` only takes a state of the same run.
    """

    def __init__(self, config: TrainConfig, *, device: torch.device | str = "cpu",
                 out_dir: str | Path | None = None, progress: bool = False,
                 reduce_gradients: Callable | None = None, is_main_process: bool = True,
                 sampler_factory: Callable | None = None, distributed=None, run_id: str | None = None):
        self.config = config
        self.run_id = run_id
        self.device = torch.device(device)
        self.precision = resolve_precision(config.precision, self.device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.reduce_gradients = reduce_gradients
        self.is_main = is_main_process
        self.sampler_factory = sampler_factory
        self.distributed = distributed
        if distributed is not None:
            self.reduce_gradients = reduce_gradients or distributed.reduce_gradients
            self.is_main = is_main_process and distributed.is_main
        self.loss_fn = get_loss(config.loss)

    # -- helpers -----------------------------------------------------------------------------------
    def transforms(self, model: nn.Module) -> tuple[ImageTransform, ViewEvalTransform]:
        """(train: native random crops + flips unless the recipe pre-resizes; evaluate: the test view)."""
        info = model.backbone.info
        c = self.config
        dataset_resize = tuple(sorted((str(k), int(v)) for k, v in c.dataset_resize.items()))
        train = ImageTransform(info.mean, info.std, resize=c.train_resize, crop=c.crop, train=True, hflip=c.hflip,
                               dataset_resize=dataset_resize)
        conv = getattr(getattr(model.backbone.clip, "visual", None), "conv1", None)
        patch = int(conv.kernel_size[0]) if conv is not None else 16
        evaluate = make_eval_transform(c.test_view, info, patch=patch, dataset_resize=dataset_resize)
        return train, evaluate

    def _forward(self, model: nn.Module, batch: Batch):
        pixels = batch.pixels.to(self.device, non_blocking=True)
        with autocast_context(self.precision, self.device):
            if _accepts_prompt_keys(model) and any(k is not None for k in batch.prompt_keys):
                return model(pixels, prompt_keys=list(batch.prompt_keys))
            return model(pixels)

    @torch.no_grad()
    def predict(self, model: nn.Module, items: Sequence[TrainItem], transform) -> np.ndarray:
        """Scores for ``items`` (NaN where an image failed to decode); under a multi-input test view the
        mean over each image's inputs (``imaging.views.pool_scores``, as ``perceptiq score`` pools)."""
        was_training = model.training
        model.eval()
        all_items = items
        if self.distributed is not None:  # each process scores its share, then all gather
            items = [all_items[i] for i in self.distributed.eval_positions(len(all_items))]
        scores = np.full(len(items), np.nan)
        loader = make_loader(items, transform, batch_size=self.config.eval_batch_size, shuffle=False,
                             num_workers=self.config.workers)
        for batch in loader:
            if not len(batch):
                continue
            if batch.input_counts is None:
                scores[batch.indices] = self._forward(model, batch).scores.float().cpu().numpy()
                continue
            counts = batch.input_counts
            expanded = dataclasses.replace(batch, prompt_keys=[k for k, n in zip(batch.prompt_keys, counts)
                                                               for _ in range(n)])
            flat = self._forward(model, expanded).scores.float().cpu().tolist()
            offsets = np.cumsum([0, *counts])
            scores[batch.indices] = [pool_scores(flat[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
        model.train(was_training)
        if self.distributed is not None:
            scores = self.distributed.gather_scores(scores, len(all_items))
        return scores

    def evaluate(self, model: nn.Module, eval_sets: dict[str, Sequence[TrainItem]],
                 transform: ImageTransform) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
        """Metrics and predictions on every evaluation set."""
        metrics, predictions = {}, {}
        for name, items in eval_sets.items():
            predictions[name] = self.predict(model, items, transform)
            targets = np.array([it.target for it in items])
            try:
                metrics[name] = compute_metrics(predictions[name], targets)
            except ValueError as err:  # e.g. fewer than 3 test images: report, never stop training
                log.warning("metrics on %s not computed: %s", name, err)
                metrics[name] = {"srcc": float("nan"), "plcc": float("nan")}
        return metrics, predictions

    # -- the loop ------------------------------------------------------------------------------------
    def fit(self, model: nn.Module, train_items: Sequence[TrainItem],
            eval_sets: dict[str, Sequence[TrainItem]] | None = None,
            on_epoch: Callable[[EpochRecord], None] | None = None,
            train_loader=None, *, resume: bool = False) -> TrainResult:
        """Train for ``config.epochs`` epochs; ``resume=True`` first loads the state an earlier,
        stopped ``fit`` of the same run left in ``out_dir/state`` (none: start at epoch 1).

        train_loader: instead of decoding ``train_items``, take each epoch's batches from this iterable
        of :class:`Batch` (its ``set_epoch(epoch)`` is called first when it has one), e.g. the built-in
        model's crop bank (``training.builtin.bank_batches``); ``train_items`` may then be empty. A resumed
        fit restores its ``generator`` when it has a ``torch.Generator`` one.

        The state holds the trained parameters, the optimizer's, the sampler generator's and the
        Python/NumPy/torch RNG states after the last completed epoch, and the records so far; the
        learning-rate schedule is a function of the epoch. In fp32 on the same machine a resumed fit
        performs the same operations in the same order as an uninterrupted one, so it ends with the same
        parameters and metrics, bit for bit (tests/training/test_resume.py).
        """
        if resume and self.distributed is not None:
            raise ValueError("resuming a torchrun run is not supported: each process's RNG state would have "
                             "to be saved; rerun it without --resume")
        config = self.config
        eval_sets = eval_sets or {}
        torch.manual_seed(config.seed)
        model.to(self.device)
        if config.grad_checkpointing:
            model.backbone.clip.set_grad_checkpointing(True)
        params = trainable_parameters(model)
        if not params:
            raise ValueError("the model has no trainable parameters")
        optimizer = build_optimizer(params, config)
        train_tf, eval_tf = self.transforms(model)
        if train_loader is not None:
            sampler, loader = train_loader, train_loader
        else:
            sampler = self.sampler_factory(train_items) if self.sampler_factory else None
            if sampler is None and self.distributed is not None:
                sampler = self.distributed.make_sampler(train_items, config)
            batch_size = getattr(sampler, "local_batch_size", config.batch_size)  # per process under torchrun
            loader = make_loader(train_items, train_tf, batch_size=batch_size, shuffle=True,
                                 num_workers=config.workers, seed=config.seed,
                                 crops_per_image=config.crops_per_image, balanced=config.balanced, sampler=sampler)
        epochs: list[EpochRecord] = []
        steps: list[dict] = []
        failures: dict[str, str] = {}
        final_metrics: dict[str, dict[str, float]] = {}
        final_predictions: dict[str, np.ndarray] = {}
        named = {name: p for name, p in model.named_parameters() if p.requires_grad}  # the order of ``params``
        generator = getattr(loader, "generator", None)   # the shuffle / balanced draws (make_loader's)
        generators = {"loader": generator} if isinstance(generator, torch.Generator) else {}
        state_dir = self.out_dir / STATE_DIR if self.out_dir is not None and self.is_main else None
        saved = load_loop_state(state_dir, run_id=self.run_id) if resume and state_dir is not None else None
        if saved is not None:
            saved.restore(named, optimizer, generators)
            epochs = [EpochRecord(**record) for record in saved.progress["epochs"]]
            steps, failures = saved.progress["steps"], saved.progress["failures"]
            final_metrics = saved.progress["final_metrics"]
            final_predictions = {k: v.numpy() for k, v in saved.extra_tensors().items()}
            atomic_write_lines(self.out_dir / "epochs.jsonl", [r.__dict__ for r in epochs])  # drop later lines
            log.info("resuming after epoch %d of %d from %s", saved.epoch, config.epochs, state_dir)
        elif state_dir is not None:   # a fresh fit: nothing of an earlier run's state or log may remain
            clear_loop_state(state_dir)
            (self.out_dir / "epochs.jsonl").unlink(missing_ok=True)
        for epoch in range(saved.epoch if saved is not None else 0, config.epochs):
            if sampler is not None and hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            lr = config.lr_at(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            start, total_loss, n_images, n_failed = time.perf_counter(), 0.0, 0, 0
            iterator = loader
            if self.progress and self.is_main:
                from tqdm.auto import tqdm

                iterator = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
            for step_index, batch in enumerate(iterator):
                if config.max_steps_per_epoch is not None and step_index >= config.max_steps_per_epoch:
                    break
                failures.update(batch.failures)
                n_failed += len(batch.failures)
                if not len(batch):
                    if self.distributed is None:
                        continue
                    self._empty_step(params, optimizer)  # the other processes' all-reduce needs this one
                    continue
                info = self._step(model, batch, params, optimizer)
                info.update(epoch=epoch, step=len(steps))
                steps.append(info)
                total_loss += info["loss"] * len(batch)
                n_images += len(batch)
            if self.distributed is not None:
                total_loss, n_images, n_failed = self.distributed.sum([total_loss, n_images, n_failed])
                n_images, n_failed = int(n_images), int(n_failed)
            record = EpochRecord(epoch=epoch + 1, lr=lr, train_loss=total_loss / max(n_images, 1),
                                 n_images=n_images, seconds=time.perf_counter() - start, n_failed=n_failed)
            last = epoch == config.epochs - 1
            if eval_sets and (last or (epoch + 1) % config.eval_every == 0):
                record.metrics, predictions = self.evaluate(model, eval_sets, eval_tf)
                if last:
                    final_metrics, final_predictions = record.metrics, predictions
            epochs.append(record)
            self._log_epoch(record)
            if state_dir is not None:
                save_loop_state(state_dir, epoch=epoch + 1, parameters=named, optimizer=optimizer,
                                generators=generators, run_id=self.run_id,
                                progress={"epochs": [dataclasses.asdict(r) for r in epochs], "steps": steps,
                                          "failures": failures, "final_metrics": final_metrics},
                                extra={k: torch.from_numpy(v) for k, v in final_predictions.items()})
            if on_epoch is not None:
                on_epoch(record)
        if config.grad_checkpointing:
            model.backbone.clip.set_grad_checkpointing(False)
        model.eval()
        if failures:
            log.warning("%d training image(s) could not be decoded and were skipped, e.g. %s",
                        len(failures), next(iter(failures)))
        self._write_steps(steps)
        return TrainResult(epochs, steps, final_metrics, failures, final_predictions)

    def _step(self, model: nn.Module, batch: Batch, params: list[nn.Parameter],
              optimizer: torch.optim.Optimizer) -> dict:
        optimizer.zero_grad(set_to_none=True)
        targets = batch.targets.to(self.device)
        reduce_fn = self._reducer(len(batch))
        if self.config.step == "qgr":
            from .qgr import qgr_step
            from .qgr_views import qgr_view

            pixels = batch.pixels.to(self.device)
            with autocast_context(self.precision, self.device):
                info = qgr_step(qgr_view(model), pixels, targets, self.config.qgr_lambda, params=params,
                                granularity=self.config.qgr_granularity,
                                reduce_fn=reduce_fn, quality_loss=self.loss_fn)
            optimizer.step()
            info["loss"] = info["quality_loss"]
            return info
        out = self._forward(model, batch)
        if self.config.loss in GROUPED_LOSSES:
            if batch.groups is None:
                raise ValueError(f"loss {self.config.loss!r} ranks versions of one image: the batches need "
                                 "group ids (a grouped loader such as the built-in model's crop bank)")
            loss = self.loss_fn(out.scores, targets, batch.groups.to(self.device),
                                rank_weight=self.config.rank_weight)
        else:
            loss = self.loss_fn(out.scores, targets)
        loss.backward()
        if reduce_fn is not None:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            for p, g in zip(params, reduce_fn(grads)):
                p.grad = g
        optimizer.step()
        return {"loss": float(loss.detach())}

    def _reducer(self, n_local: int) -> Callable | None:
        reduce = self.reduce_gradients
        return reduce.with_count(n_local) if hasattr(reduce, "with_count") else reduce

    def _empty_step(self, params: list[nn.Parameter], optimizer: torch.optim.Optimizer) -> None:
        """A process whose batch is empty (every image failed to decode) joins the step with weight 0:
        the same all-reduce(s) and, unless no process had an image, the same optimizer step."""
        from .qgr import quality_gradient_regularization

        reduce = self._reducer(0)
        zeros = [torch.zeros_like(p) for p in params]
        grads = reduce(zeros)
        if self.config.step == "qgr":
            grads, _ = quality_gradient_regularization(grads, reduce(zeros), self.config.qgr_lambda,
                                                       self.config.qgr_granularity)
        if getattr(reduce, "last_total", 1) == 0:
            return
        for p, g in zip(params, grads):
            p.grad = g.to(p.dtype)
        optimizer.step()

    # -- logs -----------------------------------------------------------------------------------------
    def _log_epoch(self, record: EpochRecord) -> None:
        if not self.is_main:
            return
        summary = ", ".join(f"{name}: SRCC {m['srcc']:.4f} PLCC {m['plcc']:.4f}" for name, m in record.metrics.items())
        log.info("epoch %d lr %.3g loss %.5f %s", record.epoch, record.lr, record.train_loss, summary)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / "epochs.jsonl", "a") as handle:
                handle.write(json.dumps(record.__dict__, default=float) + "\n")

    def _write_steps(self, steps: list[dict]) -> None:
        if self.out_dir is None or not self.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "steps.jsonl", "w") as handle:
            for info in steps:
                handle.write(json.dumps(info, default=float) + "\n")
