"""Build the first built-in model, ``perceptiq-tiny-v1``, from public-domain sample images (kept as the
baseline of `perceptiq reproduce-builtin`; the current model is built by ``ranked.py``).

Steps (all settings come from the recipe ``recipes/perceptiq-tiny-v1.yaml``; docs/builtin-model.md):

1. export the recipe's scikit-image sample images (public domain / CC0) as PNG, two disjoint groups:
   ``train`` and ``heldout`` (whole source images, never seen in training); large images also give
   2x2 tiles of their central square as extra references;
2. distort each group with ``perceptiq.data.synthesize`` (25 KADID-style types x 5 levels, pseudo-MOS);
3. build the GRMP model on the ``perceptiq-tiny`` architecture with random weights and train it with the
   one ``Trainer``, stage after stage (``protocol.stages``: what is trainable + training settings);
4. score the held-out references' distortions (SRCC/PLCC overall and per distortion group) and write a
   perceptiq checkpoint pair holding every tensor (fp16) and a JSON config with the sha256 and metrics.

scikit-image is a training-only dependency (``perceptiq[train]``); scoring never imports it.
"""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data import load_generic_csv, synthesize
from ...data.synthetic import get_distortion
from ...evaluation.metrics import compute_metrics
from ...models import build_model, save_checkpoint
from ...models.builtin import BUILTIN_FACTORY, BUILTIN_NAME
from ...models.checkpoints import atomic_write_bytes, checkpoint_paths
from ...recipes import load_recipe
from ..config import TrainConfig
from ..data import TrainItem
from .dct_init import init_patch_embedding_dct
from ..resume import STATE_DIR, clear_loop_state
from ..trainer import Trainer

log = logging.getLogger(__name__)

BUILTIN_RECIPE = "perceptiq-tiny-v1"   # the first built-in model; perceptiq-tiny is built by ranked.py
GROUPS = ("train", "heldout")
EVAL_SET = "heldout"
MIN_GROUP_SIZE = 5                     # fewer images than this: no per-group correlation
SNAPSHOT_PREFIX = "original_visual."   # GRMP's frozen copy for QGR (taken when encoders unfreeze): not shipped


@dataclass
class BuildResult:
    """What ``build_builtin_model`` produced: the checkpoint and the held-out figures."""

    checkpoint: Path
    heldout_metrics: dict[str, float]
    heldout_by_group: dict[str, dict[str, float]]
    stage_metrics: list[dict[str, Any]]
    n_train_images: int
    n_heldout_images: int
    train_seconds: float
    files: dict[str, Path] = field(default_factory=dict)


# -- data ------------------------------------------------------------------------------------------------
def _sample_image(name: str) -> np.ndarray:
    """A scikit-image sample image as (H, W, 3) uint8 (grey expanded); only files shipped offline."""
    try:
        import skimage.data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("building perceptiq-tiny needs scikit-image (pip install 'perceptiq[train]')") from err
    loader = getattr(skimage.data, name, None)
    if loader is None:
        raise ValueError(f"recipe {BUILTIN_RECIPE}: '{name}' is not a scikit-image sample image")
    try:
        image = np.asarray(loader())
    except Exception as err:  # noqa: BLE001 - pooch-backed images need a download: name the image
        raise ValueError(f"recipe {BUILTIN_RECIPE}: sample image '{name}' is not available offline "
                         f"({type(err).__name__}: {err}); choose images shipped with scikit-image") from err
    if image.dtype != np.uint8:
        raise ValueError(f"recipe {BUILTIN_RECIPE}: sample image '{name}' is {image.dtype}, not 8-bit")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3]


def central_tiles(image: np.ndarray) -> list[np.ndarray]:
    """The four quarters (2x2) of the image's central square: [(S/2, S/2, 3)] * 4, row by row."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left, half = (height - side) // 2, (width - side) // 2, side // 2
    return [image[top + i * half: top + (i + 1) * half, left + j * half: left + (j + 1) * half]
            for i in range(2) for j in range(2)]


def export_pristine_images(names: Sequence[str], out_dir: Path, *, tile_min_side: int | None) -> list[Path]:
    """Write each named sample image (and, if its shorter side >= ``tile_min_side``, its 4 central tiles)."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        image = _sample_image(name)
        pieces = [(name, image)]
        if tile_min_side is not None and min(image.shape[:2]) >= tile_min_side:
            pieces += [(f"{name}_tile{k // 2}{k % 2}", tile) for k, tile in enumerate(central_tiles(image))]
        for stem, pixels in pieces:
            path = out_dir / f"{stem}.png"
            Image.fromarray(np.ascontiguousarray(pixels)).save(path)
            written.append(path)
    return written


def prepare_data(recipe: dict, work_dir: Path, *, reuse: bool = True) -> dict[str, Path]:
    """Export and distort both groups of ``protocol.sources``; returns {group: labels.csv}.

    With ``reuse`` a group whose labels.csv exists from the same settings is not synthesised again.
    """
    protocol = recipe["protocol"]
    sources = protocol["sources"]
    overlap = set(sources["train"]) & set(sources["heldout"])
    if overlap:
        raise ValueError(f"recipe {recipe.get('name')}: protocol.sources: {sorted(overlap)} are both in train "
                         "and heldout; held-out references must never be trained on")
    settings = dict(protocol.get("synthesize") or {})
    csv_paths = {}
    for group in GROUPS:
        group_dir = work_dir / group
        stamp = {"sources": list(sources[group]), "tile_min_side": protocol.get("tile_min_side"), **settings}
        stamp_path = group_dir / "build-settings.json"
        labels = group_dir / "synthetic" / "labels.csv"
        if reuse and labels.is_file() and stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
            csv_paths[group] = labels
            continue
        export_pristine_images(sources[group], group_dir / "pristine", tile_min_side=protocol.get("tile_min_side"))
        csv_paths[group] = synthesize(group_dir / "pristine", group_dir / "synthetic", overwrite=True, **settings)
        stamp_path.write_text(json.dumps(stamp, indent=2))
    return csv_paths


def load_items(csv_path: Path, dataset: str) -> tuple[list[TrainItem], list]:
    """Training items (targets = pseudo-MOS, already in [0, 1]) and the samples they come from."""
    labeled = load_generic_csv(csv_path, score_range=(0.0, 1.0), name="csv")
    items = [TrainItem(str(s.path), float(s.score), dataset) for s in labeled.samples]
    return items, list(labeled.samples)


# -- model and stages ------------------------------------------------------------------------------------
def set_trainable_union(model, modes: str | Sequence[str], frozen: Sequence[str] = ()) -> list[str]:
    """Make trainable the union of ``GRMPModel.set_trainable`` modes ("encoders" + "prompts"), less the
    parameters named in ``frozen`` (``named_parameters`` keys; an unknown name is an error)."""
    modes = [modes] if isinstance(modes, str) else list(modes)
    names = {name for name, _ in model.named_parameters()}
    unknown = sorted(set(frozen) - names)
    if unknown:
        raise ValueError(f"stage 'frozen': the model has no parameter(s) {unknown}")
    chosen: set[str] = set()
    for mode in modes:
        chosen |= set(model.set_trainable(mode))
    chosen -= set(frozen)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in chosen)
    return sorted(chosen)


def apply_patch_init(model, patch_init: dict | None) -> None:
    """``model.patch_init`` of the recipe: ``{kind: dct, luma_frequencies, chroma_frequencies, gain}``."""
    if not patch_init:
        return
    settings = dict(patch_init)
    kind = settings.pop("kind", None)
    if kind != "dct":
        raise ValueError(f"model.patch_init.kind = {kind!r}: the only kind is 'dct'")
    init_patch_embedding_dct(model.backbone.clip.visual.conv1, **settings)


def metrics_by_group(predictions: np.ndarray, samples: Sequence) -> dict[str, dict[str, float]]:
    """SRCC/PLCC/... per distortion group (blur, noise, ...) of the synthetic catalogue, with its size
    ``n``; a group of fewer than ``MIN_GROUP_SIZE`` images gets only ``n`` (correlations need more)."""
    members: dict[str, list[int]] = defaultdict(list)
    for index, sample in enumerate(samples):
        members[get_distortion(sample.distortion).group].append(index)
    targets = np.array([s.score for s in samples])
    result = {}
    for group, idx in sorted(members.items()):
        result[group] = {"n": len(idx)}
        if len(idx) >= MIN_GROUP_SIZE:
            result[group].update(compute_metrics(predictions[idx], targets[idx]))
    return result


def _stage_config(recipe: dict, stage: dict, overrides: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict({**(recipe.get("train") or {}), **(stage.get("train") or {}), **overrides})


def build_builtin_model(out_dir: str | Path, *, recipe: str | Path | dict = BUILTIN_RECIPE,
                        overrides: Sequence[str] = (), work_dir: str | Path | None = None,
                        train_overrides: dict[str, Any] | None = None, reuse_data: bool = True,
                        progress: bool = False) -> BuildResult:
    """Rebuild ``perceptiq-tiny`` into ``out_dir`` (``perceptiq-tiny.safetensors`` + ``.json``).

    recipe: a recipe name/path (``overrides`` as ``section.key=value``) or an already loaded dict.
    work_dir: where pristine images, synthetic data and logs go (default ``out_dir/build``; keep it out
    of the package folder when ``out_dir`` is ``src/perceptiq/weights``).
    train_overrides: applied to every stage's training settings (e.g. ``{"max_steps_per_epoch": 1}``
    for a smoke run). Returns the checkpoint path and the held-out metrics it records.
    """
    recipe = load_recipe(recipe, list(overrides)) if not isinstance(recipe, dict) else recipe
    out_dir = Path(out_dir)
    work_dir = Path(work_dir) if work_dir is not None else out_dir / "build"
    work_dir.mkdir(parents=True, exist_ok=True)
    csv_paths = prepare_data(recipe, work_dir, reuse=reuse_data)
    train_items, _ = load_items(csv_paths["train"], "train")
    heldout_items, heldout_samples = load_items(csv_paths["heldout"], EVAL_SET)

    model_cfg = recipe["model"]
    bundle = build_model(model_cfg["name"], backbone=model_cfg["backbone"], weights=model_cfg.get("weights", "random"),
                         stem=model_cfg.get("stem"), **(model_cfg.get("options") or {}))
    model = bundle.module
    apply_patch_init(model, model_cfg.get("patch_init"))
    stage_metrics, start = [], time.perf_counter()
    stages = recipe["protocol"].get("stages") or []
    if not stages:
        raise ValueError(f"recipe {recipe.get('name')}: protocol.stages is empty; nothing to train")
    for number, stage in enumerate(stages, start=1):
        names = set_trainable_union(model, stage["trainable"], stage.get("frozen") or ())
        config = _stage_config(recipe, stage, dict(train_overrides or {}))
        stage_dir = work_dir / f"stage{number}-{stage['name']}"
        log.info("stage %d (%s): %d trainable tensors, %s", number, stage["name"], len(names), config.to_dict())
        trainer = Trainer(config, out_dir=stage_dir, progress=progress)
        result = trainer.fit(model, train_items, {EVAL_SET: heldout_items})
        clear_loop_state(stage_dir / STATE_DIR)   # the build has no --resume: its per-epoch state is not kept
        stage_metrics.append({"stage": stage["name"], "trainable": stage["trainable"],
                              "epochs": config.epochs, "seconds": round(sum(e.seconds for e in result.epochs), 1),
                              "final_train_loss": result.final_loss,
                              EVAL_SET: result.final_metrics.get(EVAL_SET, {})})
    train_seconds = time.perf_counter() - start
    model.set_trainable("none")
    _, eval_tf = Trainer(_stage_config(recipe, stages[-1], {})).transforms(model)
    predictions = Trainer(_stage_config(recipe, stages[-1], {})).predict(model, heldout_items, eval_tf)
    targets = np.array([it.target for it in heldout_items])
    overall = compute_metrics(predictions, targets)
    by_group = metrics_by_group(predictions, heldout_samples)
    checkpoint = save_builtin_checkpoint(out_dir, model, recipe, bundle.config, {
        "heldout": overall, "heldout_by_group": by_group, "stages": stage_metrics,
        "n_train_images": len(train_items), "n_heldout_images": len(heldout_items),
        "train_seconds": round(train_seconds, 1)})
    return BuildResult(checkpoint, overall, by_group, stage_metrics, len(train_items), len(heldout_items),
                       train_seconds, files=dict(csv_paths))


def save_builtin_checkpoint(out_dir: Path, model, recipe: dict, build_config: dict, report: dict) -> Path:
    """Write every tensor of ``model`` as fp16 + a JSON config with the file's sha256 and ``report``.

    fp16 halves the file (the text token table, 49408 x width, dominates); loading casts back to fp32.
    """
    from ...backbones import sha256_of

    stored_dtype = recipe["protocol"].get("stored_dtype", "float16")
    dtype = {"float16": torch.float16, "float32": torch.float32}[stored_dtype]
    tensors = {name: tensor.detach().to(dtype) if tensor.is_floating_point() else tensor.detach()
               for name, tensor in model.state_dict().items() if not name.startswith(SNAPSHOT_PREFIX)}
    config = {
        "model": recipe.get("name", BUILTIN_RECIPE), "factory": BUILTIN_FACTORY,
        "backbone": build_config["backbone"], "weights": "random", "task": "quality", "scene": None,
        "options": {**build_config.get("options", {}), "load_shipped": False,
                    "shipped": recipe.get("name", BUILTIN_RECIPE)},
        "trained_parameters": sorted(tensors),
        "stored_dtype": stored_dtype, "recipe": recipe.get("name"),
        "sources": recipe["protocol"]["sources"], **report,
    }
    path = save_checkpoint(Path(out_dir) / f"{recipe.get('name', BUILTIN_RECIPE)}.safetensors", tensors, config)
    _, config_path = checkpoint_paths(path)
    payload = _without_nan(json.loads(config_path.read_text()))
    payload["sha256"] = sha256_of(path)
    atomic_write_bytes(config_path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False).encode())
    return path


def _without_nan(value):
    """NaN (an undefined metric, e.g. a logistic fit that did not converge) becomes null: strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return value
