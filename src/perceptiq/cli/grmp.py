"""``perceptiq meta-train`` and ``perceptiq finetune``: GRMP-IQA's two training stages as commands.

Plain typer-compatible functions (registered in ``cli/main.py``); they parse flags into recipe overrides
and call ``perceptiq.training``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import Device, _fail, _parse_data


def default_run_dir(recipe_name: str) -> Path:
    """runs/<recipe>[-<variant>]: where a recipe's outputs go unless --out says otherwise."""
    return Path("runs") / str(recipe_name).replace(":", "-")


def meta_train_command(
    recipe: str = typer.Option("grmp-meta", help="Meta pre-training recipe (protocol.kind: meta) or YAML file."),
    data: List[str] = typer.Option([], "--data", help="NAME=ROOT of each pre-training dataset "
                                                      "(tid2013, kadid10k, or csv=labels.csv of `perceptiq synthesize`)."),
    set_: List[str] = typer.Option([], "--set", help="Override a recipe value: section.key=value, e.g. meta.epochs=5."),
    variant: Optional[str] = typer.Option(None, help="encoders | text-only | visual-only | erm (Table 4/5 rows)."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default runs/grmp-meta[-VARIANT])."),
    device: Device = typer.Option(Device.auto),
    progress: bool = typer.Option(True),
) -> None:
    """Meta-train GRMP-IQA's prompts on distortion tasks; writes a checkpoint for fine-tuning and scoring."""
    import logging

    from ..inference.precision import resolve_device
    from ..training.meta_training import run_meta_recipe

    loaded = load_recipe_with(recipe, variant, set_)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = out or default_run_dir(loaded.get("name", recipe))
    try:
        result = run_meta_recipe(loaded, _parse_data(data), out, device=resolve_device(device.value),
                                 progress=progress)
    except (ValueError, FileNotFoundError, TypeError) as err:
        _fail(str(err))
    last = result.epochs[-1]
    typer.echo(f"{len(result.tasks)} tasks, {len(result.epochs)} epochs: support loss {last.support_loss:.4f}, "
               f"query loss {last.query_loss:.4f}")
    typer.echo(f"checkpoint {result.checkpoint} (use as --init, model.init or `perceptiq score --model`)")


def finetune_command(
    recipe: str = typer.Option("grmp-fewshot", help="Fine-tuning recipe (grmp-fewshot, grmp-full, grmp-*-ablation, "
                                                    "grmp-lambda, gamma-qgr-fewshot) or a YAML file."),
    data: List[str] = typer.Option([], "--data", help="NAME=ROOT for each dataset the recipe uses (repeatable)."),
    shots: List[int] = typer.Option([], "--shots", help="Labelled images per run (repeatable; protocol.shots)."),
    splits: Optional[int] = typer.Option(None, min=1, help="Number of random splits (protocol.split.n_splits)."),
    lam: Optional[float] = typer.Option(None, min=0.0, help="QGR soft weight lambda (train.qgr_lambda)."),
    init: Optional[Path] = typer.Option(None, help="Starting checkpoint, e.g. a meta-train output (model.init)."),
    set_: List[str] = typer.Option([], "--set", help="Override a recipe value: section.key=value (repeatable)."),
    variant: Optional[str] = typer.Option(None, help="A named variant of the recipe (an ablation row)."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default runs/<recipe>[-VARIANT])."),
    device: Device = typer.Option(Device.auto),
    max_runs: Optional[int] = typer.Option(None, help="Run only the first N train/test units."),
    missing: str = typer.Option("error", help="error | skip: listed but absent images."),
    progress: bool = typer.Option(True),
    plots: bool = typer.Option(True, help="Write Fig. 4 PNGs (SRCC per epoch, gradient angle) per run."),
) -> None:
    """Fine-tune (few-shot or fully supervised) with QGR as a recipe says; results table, checkpoints, plots."""
    import logging

    from ..inference.precision import resolve_device
    from ..training.experiment import run_experiment

    overrides = finetune_overrides(shots=shots, splits=splits, lam=lam, init=init) + list(set_)
    loaded = load_recipe_with(recipe, variant, overrides)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = out or default_run_dir(loaded.get("name", recipe))
    try:
        result = run_experiment(loaded, _parse_data(data), out, device=resolve_device(device.value),
                                progress=progress, max_runs=max_runs, missing=missing)
    except (ValueError, FileNotFoundError, TypeError) as err:
        _fail(str(err))
    typer.echo(result.result.to_markdown())
    typer.echo(f"results, checkpoints and logs in {out}")
    if plots:
        from ..training.plots import plot_runs

        written = plot_runs(result.run_dirs, out)
        if written:
            typer.echo(f"{len(written)} plot(s) written, e.g. {written[-1]}")


def finetune_overrides(*, shots: List[int], splits: Optional[int], lam: Optional[float],
                       init: Optional[Path]) -> list[str]:
    """The recipe overrides that finetune's dedicated flags stand for (applied before --set)."""
    overrides = []
    if shots:
        overrides.append(f"protocol.shots=[{', '.join(str(int(k)) for k in shots)}]")
    if splits is not None:
        overrides.append(f"protocol.split.n_splits={int(splits)}")
    if lam is not None:
        overrides.append(f"train.qgr_lambda={float(lam)}")
    if init is not None:
        overrides.append(f"model.init={json.dumps(str(init))}")   # a JSON string is a YAML string
    return overrides


def load_recipe_with(recipe: str, variant: Optional[str], overrides: List[str]) -> dict:
    """The recipe, its variant, then the command line's overrides (so flags win over the variant)."""
    from ..recipes import apply_override, load_recipe, resolve_variant

    try:
        loaded = resolve_variant(load_recipe(recipe), variant)
        for override in overrides:
            apply_override(loaded, override)
    except (KeyError, ValueError) as err:
        _fail(str(err).strip('"'))
    return loaded
