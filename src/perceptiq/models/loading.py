"""Build an assessment module from a registered name or a trained checkpoint."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..backbones import BackboneInfo, create_backbone
from ..prompts import check_task
from .checkpoints import is_checkpoint, load_checkpoint
from .registry import ModelSpec, get_factory, get_model_spec


@dataclass
class AssessmentBundle:
    """What a caller needs besides the module: its metadata and how it was built."""

    module: nn.Module
    spec: ModelSpec
    backbone: BackboneInfo
    task: str
    scene: str | None
    config: dict = field(default_factory=dict)


def _resolve_task(spec: ModelSpec, task: str | None) -> str:
    task = task or spec.tasks[0]
    check_task(task)
    if task not in spec.tasks:
        raise ValueError(f"model '{spec.name}' assesses {', '.join(spec.tasks)}, not {task}")
    return task


def _resolve_scene(spec: ModelSpec, scene: str | None) -> str | None:
    if scene is not None and scene not in spec.scenes:
        allowed = ", ".join(spec.scenes) or "none (this model has no scene prompts)"
        raise ValueError(f"model '{spec.name}' does not take scene '{scene}'; scenes: {allowed}")
    return scene


def build_model(model: str = "zero-shot", *, backbone: str | None = None, weights: str | None = None,
                task: str | None = None, scene: str | None = None, device: str | torch.device = "cpu",
                **options) -> AssessmentBundle:
    """A registered model (``model`` is a name) or a checkpoint (``model`` is a path) ready to run.

    backbone/weights default to the model's own (``default_backbone`` / ``default_weights``; a checkpoint
    records the ones it was trained from). ``$PERCEPTIQ_WEIGHTS`` overrides the default weights.
    """
    if is_checkpoint(model) or Path(str(model)).suffix in (".safetensors", ".json"):
        return _build_from_checkpoint(Path(model), backbone=backbone, weights=weights, task=task,
                                      scene=scene, device=device)
    spec = get_model_spec(model)
    import os

    arch = backbone or spec.default_backbone
    weights = weights or os.environ.get("PERCEPTIQ_WEIGHTS") or spec.default_weights
    task = _resolve_task(spec, task)
    scene = _resolve_scene(spec, scene)
    clip = create_backbone(arch, weights, device=device)
    module = get_factory(spec.factory)(clip, task=task, scene=scene, **{**spec.options, **options})
    module.eval()
    config = {"model": spec.name, "factory": spec.factory, "backbone": arch, "weights": weights,
              "task": task, "scene": scene, "options": {**spec.options, **options}}
    return AssessmentBundle(module.to(device), spec, clip.info, task, scene, config)


def _build_from_checkpoint(path: Path, *, backbone, weights, task, scene, device) -> AssessmentBundle:
    tensors, config = load_checkpoint(path)
    spec = get_model_spec(config["model"]) if config.get("model") else None
    arch = backbone or config["backbone"]
    weights = weights or config["weights"]
    task = task or config.get("task", "quality")
    scene = scene if scene is not None else config.get("scene")
    clip = create_backbone(arch, weights, device="cpu")
    factory = get_factory(config["factory"])
    module = factory(clip, task=task, scene=scene, **config.get("options", {}))
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    if unexpected:
        raise ValueError(f"{path}: checkpoint has parameters the model does not: {unexpected[:5]}")
    trained = set(tensors)
    expected = set(config.get("trained_parameters", trained))
    if expected - trained:
        raise ValueError(f"{path}: checkpoint is missing trained parameters: {sorted(expected - trained)[:5]}")
    module.eval()
    if spec is None:
        raise ValueError(f"{path}: checkpoint config names no registered model")
    return AssessmentBundle(module.to(device), spec, clip.info, task, scene, config)
