"""Training throughput of the three training procedures, each through the project's own code path.

* ``gamma-mixed``: ``Trainer`` standard step on a Gamma model (MoAE + adapter + C trained), samples of a
  mixed batch carrying two different prompt keys, as in mixed-dataset training;
* ``grmp-qgr``: ``Trainer`` step ``"qgr"`` on GRMP-IQA fine-tuning (prompts + last 4 blocks trained):
  a frozen original-CLIP forward for p_sem, and two backward passes (G_qua, G_sem) per step;
* ``grmp-meta``: one bi-level ``perceptiq.training.meta.meta_step`` over k tasks with ``model_loss_fn``
  (two gradient evaluations per task).

Each is run once under the FLOP counter (warm-up: caches, allocator, first-call costs, and the FLOPs of
one step) and then timed: the Trainer over ``steps`` steps of one epoch (decode in the loop included,
``workers`` decode processes), the meta step by repeated calls.
"""
from __future__ import annotations

import inspect
import random
from dataclasses import dataclass

import torch

from ..backbones.architectures import architecture_config
from ..models import build_model
from ..models.gamma import GammaModel
from ..training import TrainConfig, Trainer
from ..training.data import TrainItem
from ..training.meta import meta_step, model_loss_fn
from .flops import count_flops
from .timing import FigureRecord, time_calls, track_peak_memory

TRAINING_KINDS = ("gamma-mixed", "grmp-qgr", "grmp-meta")
GAMMA_MIXED_PROMPT_KEYS = ("naive", "quality")   # two prompt sets in one batch, as mixed training has
GRMP_FINETUNE_TRAINABLE = "prompts+last4"        # GRMP-IQA section 4.2
GRMP_META_TRAINABLE = "prompts"                  # GRMP-IQA section 3.3


@dataclass
class TrainingFigure(FigureRecord):
    kind: str
    precision: str
    batch_size: int              # images per optimizer step (meta: per task, support + query)
    images_per_step: int
    steps_per_s: float
    images_per_s: float
    steps_timed: int
    flops_per_step: float
    achieved_flops_per_s: float
    mfu: float | None = None
    trained_parameters: int = 0
    host_peak_bytes: int | None = None
    host_peak_reset: bool = False
    gpu_peak_bytes: int | None = None


def model_options(name: str, arch: str) -> dict:
    """Build options that let every benchmark model run on any architecture: Gamma's MoAE goes into the
    last 6 blocks (the paper's setting), or all blocks of a shallower test tower."""
    if name != "gamma":
        return {}
    default_layers = inspect.signature(GammaModel).parameters["n_layers"].default
    depth = int(architecture_config(arch)["vision_cfg"]["layers"])
    return {"n_layers": depth} if depth < default_layers else {}


def _items(paths: list[str], n: int, prompt_keys: tuple[str | None, ...], seed: int) -> list[TrainItem]:
    rng = random.Random(seed)
    return [TrainItem(path=paths[i % len(paths)], target=rng.random(), dataset="bench",
                      prompt_key=prompt_keys[i % len(prompt_keys)]) for i in range(n)]


def _trainer_figure(kind: str, model: torch.nn.Module, paths: list[str], *, config: dict, device: torch.device,
                    steps: int, prompt_keys: tuple[str | None, ...], seed: int) -> TrainingFigure:
    """Warm-up + FLOP count on one step, then ``steps`` timed steps through ``Trainer.fit``."""
    batch = config["batch_size"]
    items = _items(paths, batch * steps, prompt_keys, seed)
    warm = Trainer(TrainConfig(**{**config, "max_steps_per_epoch": 1}), device=device)
    counted = count_flops(warm.fit, model, items[:batch])
    trainer = Trainer(TrainConfig(**{**config, "max_steps_per_epoch": steps}), device=device)
    with track_peak_memory(device) as peak:
        result = trainer.fit(model, items)
    seconds = result.epochs[-1].seconds
    n_steps = len(result.steps)
    figure = TrainingFigure(
        kind=kind, precision=trainer.precision, batch_size=batch, images_per_step=batch,
        steps_per_s=n_steps / seconds, images_per_s=n_steps * batch / seconds, steps_timed=n_steps,
        flops_per_step=float(counted.total), achieved_flops_per_s=counted.total * n_steps / seconds,
        trained_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
    )
    figure.add_memory(peak)
    return figure


def measure_gamma_mixed(paths: list[str], *, arch: str, weights: str, device: torch.device, precision: str,
                        batch_size: int, steps: int, workers: int, seed: int = 0) -> TrainingFigure:
    model = build_model("gamma", backbone=arch, weights=weights, device=device,
                        **model_options("gamma", arch)).module
    config = dict(epochs=1, batch_size=batch_size, lr=2e-5, loss="mse", precision=precision,
                  workers=workers, seed=seed)
    return _trainer_figure("gamma-mixed", model, paths, config=config, device=device, steps=steps,
                           prompt_keys=GAMMA_MIXED_PROMPT_KEYS, seed=seed)


def measure_grmp_qgr(paths: list[str], *, arch: str, weights: str, device: torch.device, precision: str,
                     batch_size: int, steps: int, workers: int, seed: int = 0) -> TrainingFigure:
    model = build_model("grmp-iqa", backbone=arch, weights=weights, device=device).module
    model.set_trainable(GRMP_FINETUNE_TRAINABLE)
    config = dict(epochs=1, batch_size=batch_size, lr=2e-5, loss="bce", step="qgr", qgr_lambda=5.0,
                  precision=precision, workers=workers, seed=seed)
    return _trainer_figure("grmp-qgr", model, paths, config=config, device=device, steps=steps,
                           prompt_keys=(None,), seed=seed)


def measure_grmp_meta(*, arch: str, weights: str, device: torch.device, precision: str,
                      tasks: int, support: int, query: int, min_seconds: float, seed: int = 0) -> TrainingFigure:
    """One meta-batch of ``tasks`` tasks (support + query images each) per call, tensors in place."""
    from ..inference.precision import autocast_context

    model = build_model("grmp-iqa", backbone=arch, weights=weights, device=device).module
    model.set_trainable(GRMP_META_TRAINABLE)
    model.train()
    image_size = model.backbone.info.image_size
    params = dict(model.trainable_parameters())
    optimizer = torch.optim.Adam(params.values(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)

    def batch(n: int):
        pixels = torch.randn(n, 3, image_size, image_size, generator=generator).to(device)
        return pixels, torch.rand(n, generator=generator).to(device)

    meta_tasks = [(batch(support), batch(query)) for _ in range(tasks)]
    loss_fn = model_loss_fn(model)

    def step():
        with autocast_context(precision, device):
            meta_step(params, meta_tasks, loss_fn, alpha=1e-4, outer_optimizer=optimizer)

    counted = count_flops(step)
    with track_peak_memory(device) as peak:
        timing = time_calls(step, device, warmup=0, min_calls=1, min_seconds=min_seconds)
    images = tasks * (support + query)
    figure = TrainingFigure(
        kind="grmp-meta", precision=precision, batch_size=support + query, images_per_step=images,
        steps_per_s=1.0 / timing.seconds, images_per_s=images / timing.seconds, steps_timed=timing.calls,
        flops_per_step=float(counted.total), achieved_flops_per_s=counted.total / timing.seconds,
        trained_parameters=sum(p.numel() for p in params.values()),
    )
    figure.add_memory(peak)
    return figure
