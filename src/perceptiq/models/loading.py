"""Build an assessment module from a registered name or a trained checkpoint."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..backbones import BackboneInfo, create_backbone
from ..prompts import check_task
from .checkpoints import checkpoint_paths, is_checkpoint, load_checkpoint
from .registry import SHIPPED_WEIGHTS, ModelSpec, get_factory, get_model_spec


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
                stem: dict | None = None, **options) -> AssessmentBundle:
    """A registered model (``model`` is a name) or a checkpoint (``model`` is a path) ready to run.

    backbone/weights default to the model's own (``default_backbone`` / ``default_weights``; a checkpoint
    records the ones it was trained from). ``$PERCEPTIQ_WEIGHTS`` overrides the default weights.
    stem: convolutional-stem settings over configs/stems.json's (a recipe's ``model.stem``; hybrid
    architectures only). The config records the stem built, so a checkpoint saved with it rebuilds that
    stem; a checkpoint path takes its recorded stem, and ``stem`` is refused there.
    """
    if is_checkpoint(model) or Path(str(model)).suffix in (".safetensors", ".json"):
        if stem is not None:
            raise ValueError(f"{model}: a checkpoint is built with the stem it recorded; stem= is for model names")
        return _build_from_checkpoint(Path(model), backbone=backbone, weights=weights, task=task,
                                      scene=scene, device=device)
    spec = get_model_spec(model)
    import os

    arch = backbone or spec.default_backbone
    weights = weights or os.environ.get("PERCEPTIQ_WEIGHTS") or spec.default_weights
    if weights == SHIPPED_WEIGHTS and spec.default_weights != SHIPPED_WEIGHTS:
        raise ValueError(f"model '{spec.name}' ships no weights; give --weights (openai, a file, ...)")
    task = _resolve_task(spec, task)
    scene = _resolve_scene(spec, scene)
    # shipped weights: a random backbone that the model's factory overwrites with the package's tensors
    clip = create_backbone(arch, "random" if weights == SHIPPED_WEIGHTS else weights, device=device, stem=stem)
    module = get_factory(spec.factory)(clip, task=task, scene=scene, **{**spec.options, **options})
    module.eval()
    config = {"model": spec.name, "factory": spec.factory, "backbone": arch, "weights": weights,
              "task": task, "scene": scene, "options": {**spec.options, **options}}
    if clip.info.stem is not None:
        # the front end's settings are not tensors: a checkpoint saved with this config rebuilds them
        config["stem"] = clip.info.stem
    return AssessmentBundle(module.to(device), spec, clip.info, task, scene, config)


def _build_from_checkpoint(path: Path, *, backbone, weights, task, scene, device) -> AssessmentBundle:
    tensors, config = load_checkpoint(path)
    spec = get_model_spec(config["model"]) if config.get("model") else None
    arch = backbone or config["backbone"]
    weights = weights or config["weights"]
    task = task or config.get("task", "quality")
    scene = scene if scene is not None else config.get("scene")
    # the recorded stem settings (not tensors) rebuild the front end the tensors were trained with;
    # checkpoints from before they were recorded get stems.json's, as they always did
    stem = config.get("stem") if arch == config["backbone"] else None
    clip = create_backbone(arch, "random" if weights == SHIPPED_WEIGHTS else weights, device="cpu", stem=stem)
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
    clip.info.weights = checkpoint_weights_label(module, tensors, config, tensor_path_of(path))
    return AssessmentBundle(module.to(device), spec, clip.info, task, scene, config)


def tensor_path_of(path: Path) -> Path:
    return checkpoint_paths(path)[0]


def checkpoint_weights_label(module: nn.Module, tensors: dict, config: dict, tensor_path: Path) -> str:
    """What a checkpoint-built model's weights are, for reports: the checkpoint file, and whether it holds
    every parameter of the model or only the trained ones over the starting weights it names.

    e.g. ``model.safetensors (every tensor)`` or ``model.safetensors (14 trained tensors over openai)``.
    """
    own = {name for name, _ in module.named_parameters()}
    held = own & set(tensors)
    if own <= held:
        return f"{tensor_path.name} (every tensor)"
    return f"{tensor_path.name} ({len(held)} trained tensors over {config.get('weights')})"
