"""``perceptiq build-tiny``: rebuild the built-in model (a typer-compatible function; the CLI registers it).

    perceptiq build-tiny --out src/perceptiq/weights --work-dir runs/perceptiq-tiny-build   # the shipped files
    perceptiq build-tiny --out /tmp/tiny --set train.batch_size=32 --max-steps 1            # a smoke run
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List, Optional

import typer

DEFAULT_WORK_DIR = Path("runs") / "perceptiq-tiny-build"


def build_tiny_command(
    out: Path = typer.Option(..., help="Folder for perceptiq-tiny.safetensors + .json "
                                       "(src/perceptiq/weights replaces the shipped model)."),
    work_dir: Path = typer.Option(DEFAULT_WORK_DIR, help="Pristine images, synthetic data and training logs."),
    recipe: str = typer.Option("perceptiq-tiny", help="Recipe name or YAML path."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Recipe override section.key=value (repeatable)."),
    max_steps: Optional[int] = typer.Option(None, help="Cap steps per epoch (smoke runs)."),
    fresh_data: bool = typer.Option(False, help="Synthesise again even if the work folder has the data."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Rebuild the built-in model perceptiq-tiny from scikit-image's public-domain sample images."""
    from .builtin import build_builtin_model

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("root",):   # open_clip logs model creation on the root logger
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("perceptiq").setLevel(logging.INFO)
    train_overrides = {"max_steps_per_epoch": max_steps} if max_steps else None
    result = build_builtin_model(out, recipe=recipe, overrides=list(set_ or []), work_dir=work_dir,
                                 train_overrides=train_overrides, reuse_data=not fresh_data, progress=progress)
    typer.echo(f"wrote {result.checkpoint} (+ .json); trained {result.train_seconds:.0f} s on "
               f"{result.n_train_images} images")
    typer.echo(f"held-out ({result.n_heldout_images} images): SRCC {result.heldout_metrics['srcc']:.3f} "
               f"PLCC {result.heldout_metrics['plcc']:.3f}")
    typer.echo(json.dumps({g: round(m.get("srcc", float("nan")), 3) for g, m in result.heldout_by_group.items()}))
