"""Build the built-in model from pristine photographs by learning to rank their distorted versions.

Recipe ``perceptiq-tiny`` (``protocol.kind: crop-bank``; docs/builtin-model.md):

1. the crop bank (``crop_bank.py``) of the training photographs: each photo, at a random size, distorted
   as a whole by a cycling type at levels 1-5 plus one other type, cut into 224x224 crops at the same
   positions in every version (resumable shards);
2. the GRMP model on the hybrid ``perceptiq-tiny`` architecture, random start, trained by the one
   ``Trainer`` on whole groups (``bank_batches.py``) with ``loss: bce+rank``: BCE against 1 - level/5
   (GRMP Eq. 3) plus RankNet inside each group (RankIQA). The trainer writes its state every epoch, so
   ``resume=True`` continues a stopped build from its last completed epoch;
3. a checkpoint pair holding every tensor (fp16) and a JSON config with its sha256, the bank's
   fingerprint, the photographs used and the training figures.

Held-out evaluation is not part of the build: ``perceptiq reproduce-builtin`` scores a checkpoint and the
classical baselines on photographs from another source, in one run.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.synthetic.sources import list_source_images
from ...models import build_model, save_checkpoint
from ...models.builtin import BUILTIN_FACTORY
from ...models.checkpoints import atomic_write_bytes, checkpoint_paths
from ...recipes import check_protocol
from ..config import TrainConfig
from ..trainer import Trainer
from .bank_batches import BankBatches
from .crop_bank import CropBankSpec, build_crop_bank

log = logging.getLogger(__name__)

SNAPSHOT_PREFIX = "original_visual."   # GRMP's frozen copy for QGR: never shipped


@dataclass
class RankedBuildResult:
    checkpoint: Path
    n_photos: int
    n_groups: int
    train_seconds: float
    final_loss: float


def bank_spec(recipe: dict) -> CropBankSpec:
    settings = dict(recipe["protocol"].get("bank") or {})
    # YAML gives lists; the spec is frozen and hashed, so its sequence fields are tuples
    return CropBankSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_ranked_model(recipe: dict, out_dir: Path, *, photos: Path, work_dir: Path,
                       train_overrides: dict[str, Any] | None = None, resume: bool = False,
                       device: str = "auto", workers: int | None = None, progress: bool = False,
                       file_stem: str = "perceptiq-tiny") -> RankedBuildResult:
    """Steps 1-3 above; ``photos`` is a folder of pristine training photographs (its ``train/``
    sub-folder when it has one, as ``perceptiq fetch-photos`` writes)."""
    from .build import set_trainable_union

    check_protocol(recipe)    # a recipe dict may come without load_recipe, which checks it too
    protocol = recipe["protocol"]
    photo_dir = Path(photos)
    if (photo_dir / protocol.get("photos_role", "train")).is_dir():
        photo_dir = photo_dir / protocol.get("photos_role", "train")
    if not photo_dir.is_dir():
        raise FileNotFoundError(f"{photo_dir}: no such folder of training photographs "
                                "(`perceptiq fetch-photos -o DIR --role train` makes one)")
    photo_paths = list_source_images(photo_dir)
    if not photo_paths:
        raise ValueError(f"{photo_dir}: no images found")
    work_dir.mkdir(parents=True, exist_ok=True)
    workers = workers if workers is not None else max(1, min(os.cpu_count() or 1, 8))
    spec = bank_spec(recipe)
    bank = build_crop_bank(photo_paths, work_dir / "bank", spec, workers=workers,
                           progress=(lambda d, n: log.info("crop bank: %d/%d photographs", d, n)) if progress else None)

    model_cfg = recipe["model"]
    torch_device = resolve_device(device)
    bundle = build_model(model_cfg["name"], backbone=model_cfg["backbone"], weights=model_cfg.get("weights", "random"),
                         stem=model_cfg.get("stem"), **(model_cfg.get("options") or {}))
    model = bundle.module
    set_trainable_union(model, protocol["trainable"], protocol.get("frozen") or ())
    if protocol.get("train_temperature"):
        model.backbone.clip.logit_scale.requires_grad_(True)
    info = model.backbone.info
    settings = {k: v for k, v in recipe["train"].items()}
    settings.update(train_overrides or {})
    steps = int(settings.pop("steps_per_epoch", protocol["steps_per_epoch"]))
    if settings.get("max_steps_per_epoch"):
        steps = min(steps, int(settings["max_steps_per_epoch"]))
    config = TrainConfig.from_dict(settings)
    loader = BankBatches(bank, np.arange(len(bank)), mean=info.mean, std=info.std,
                         groups_per_step=int(protocol["groups_per_step"]), steps_per_epoch=steps,
                         seed=config.seed, hflip=config.hflip)
    # the run's identity (recipe after overrides, photographs): --resume refuses a work folder of another run
    from ..resume import check_recorded_run, record_new_run, run_identity

    identity = run_identity(recipe, {"photos": photo_dir}, train_overrides=dict(train_overrides or {}),
                            photo_names=[p.name for p in photo_paths])
    run_id = check_recorded_run(work_dir / "train", identity) if resume else None
    if run_id is None:
        run_id = record_new_run(work_dir / "train", identity)
    trainer = Trainer(config, device=torch_device, out_dir=work_dir / "train", progress=progress, run_id=run_id)
    start = time.perf_counter()
    result = _fit(trainer, model, loader, resume)
    train_seconds = time.perf_counter() - start
    model.to("cpu")
    report = {"n_photos": len(photo_paths), "photos": [p.name for p in photo_paths], "n_groups": len(bank),
              "bank_fingerprint": json.loads((bank.root / "spec.json").read_text())["fingerprint"],
              "train_seconds": round(train_seconds, 1), "final_train_loss": result.final_loss,
              "epochs": len(result.epochs), "steps_per_epoch": steps, "device": str(torch_device),
              "default_view": protocol.get("default_view")}
    checkpoint = save_shipped_checkpoint(out_dir / f"{file_stem}.safetensors", model, recipe, bundle.config, report)
    return RankedBuildResult(checkpoint, len(photo_paths), len(bank), train_seconds, result.final_loss)


def _fit(trainer: Trainer, model, loader: BankBatches, resume: bool):
    """Train; after every epoch also write the model's weights to ``train/snapshots/epoch-NNN.safetensors``
    (a long build can be judged, or shipped, from any epoch while it runs)."""
    import inspect

    from safetensors.torch import save_file

    snapshots = trainer.out_dir / "snapshots"

    def snapshot(record) -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
                   if not k.startswith(SNAPSHOT_PREFIX)}
        snapshots.mkdir(parents=True, exist_ok=True)
        target = snapshots / f"epoch-{record.epoch:03d}.safetensors"
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, target)

    if "resume" in inspect.signature(trainer.fit).parameters:
        return trainer.fit(model, [], None, on_epoch=snapshot, train_loader=loader, resume=resume)
    if resume:
        raise ValueError("this trainer cannot resume")
    return trainer.fit(model, [], None, on_epoch=snapshot, train_loader=loader)


def save_shipped_checkpoint(path: Path, model, recipe: dict, build_config: dict, report: dict) -> Path:
    """Every tensor of ``model`` (fp16 by default: half the file) + a JSON config with the file's sha256."""
    from ...backbones import sha256_of

    stored_dtype = recipe["protocol"].get("stored_dtype", "float16")
    dtype = {"float16": torch.float16, "float32": torch.float32}[stored_dtype]
    tensors = {name: tensor.detach().to(dtype) if tensor.is_floating_point() else tensor.detach()
               for name, tensor in model.state_dict().items() if not name.startswith(SNAPSHOT_PREFIX)}
    name = recipe.get("name", "perceptiq-tiny")
    config = {
        "model": name, "factory": BUILTIN_FACTORY,
        "backbone": build_config["backbone"], "weights": "random", "task": "quality", "scene": None,
        "options": {**build_config.get("options", {}), "load_shipped": False, "shipped": name},
        "trained_parameters": sorted(tensors), "stored_dtype": stored_dtype, "recipe": name, **report,
        # the front end's settings are not tensors: recorded so that loading rebuilds the same front end
        "stem": model.backbone.info.stem,
    }
    path = save_checkpoint(path, tensors, config)
    _, config_path = checkpoint_paths(path)
    payload = json.loads(config_path.read_text())
    payload["sha256"] = sha256_of(path)
    atomic_write_bytes(config_path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False).encode())
    return path
