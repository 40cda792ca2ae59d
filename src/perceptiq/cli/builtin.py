"""``perceptiq build-tiny``: rebuild the built-in model perceptiq-tiny (docs/builtin-model.md).

    perceptiq build-tiny -o src/perceptiq/weights --overwrite --work-dir runs/perceptiq-tiny-build   # the shipped files
    perceptiq build-tiny -o /tmp/tiny --set train.batch_size=32 --max-steps 1                         # a smoke run
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import (check_output_file, output_option, overwrite_option, progress_option, recipe_option,
                     set_option)
from .train import configure_logging

DEFAULT_WORK_DIR = Path("runs") / "perceptiq-tiny-build"


def build_tiny_command(
    output: Path = output_option("Folder for perceptiq-tiny.safetensors + .json (src/perceptiq/weights "
                                 "replaces the shipped model).", default=...),
    overwrite: bool = overwrite_option(),
    work_dir: Path = typer.Option(DEFAULT_WORK_DIR, "--work-dir", metavar="DIR",
                                  help="Pristine images, synthetic data and training logs."),
    recipe: str = recipe_option("perceptiq-tiny", "Recipe name or YAML path."),
    set_: List[str] = set_option(),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", metavar="N", min=1, help="Cap steps per epoch (smoke runs)."),
    fresh_data: bool = typer.Option(False, "--fresh-data/--reuse-data",
                                    help="Synthesise the training data again even if the work folder has it."),
    progress: bool = progress_option(),
) -> None:
    """Rebuild the built-in model perceptiq-tiny from scikit-image's public-domain sample images."""
    from ..models.builtin import BUILTIN_FILE_STEM

    check_output_file(output / f"{BUILTIN_FILE_STEM}.safetensors", suffixes=(".safetensors",),
                      overwrite=overwrite)
    configure_logging()
    from ..training.builtin import build_builtin_model

    train_overrides = {"max_steps_per_epoch": max_steps} if max_steps else None
    result = build_builtin_model(output, recipe=recipe, overrides=list(set_), work_dir=work_dir,
                                 train_overrides=train_overrides, reuse_data=not fresh_data, progress=progress)
    typer.echo(f"wrote {result.checkpoint} (+ .json); trained {result.train_seconds:.0f} s on "
               f"{result.n_train_images} images")
    typer.echo(f"held-out ({result.n_heldout_images} images): SRCC {result.heldout_metrics['srcc']:.3f} "
               f"PLCC {result.heldout_metrics['plcc']:.3f}")
    typer.echo(json.dumps({g: round(m.get("srcc", float("nan")), 3) for g, m in result.heldout_by_group.items()}))
