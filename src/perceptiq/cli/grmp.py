"""``perceptiq meta-train`` and ``perceptiq finetune``: GRMP-IQA's two training stages as commands.

Plain typer-compatible functions (registered in ``cli/main.py``); they parse flags into recipe overrides
and call ``perceptiq.training``. Run folder, recipe loading and logging are shared with ``train``
(``cli/train.py``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import (Device, Missing, data_option, device_option, fail, missing_option, overwrite_option, parse_data,
                     progress_option, recipe_option, set_option, splits_option, variant_option)
from .train import (configure_logging, datasets_from_data, load_recipe_with, prepare_run_folder, run_output_option,
                    run_resume_option)


def meta_train_command(
    recipe: str = recipe_option("grmp-meta", "Meta pre-training recipe (protocol.kind: meta) or a YAML file."),
    data: List[str] = data_option("NAME=ROOT of each pre-training dataset (tid2013, kadid10k, or "
                                  "csv=labels.csv of `perceptiq synthesize`; repeatable)."),
    set_: List[str] = set_option(),
    variant: Optional[str] = variant_option("encoders | text-only | visual-only | erm (GRMP Table 4/5 rows)."),
    output: Optional[Path] = run_output_option("runs/grmp-meta[-VARIANT]"),
    overwrite: bool = overwrite_option(),
    resume: bool = run_resume_option(),
    device: Device = device_option(),
    missing: Missing = missing_option(),
    progress: bool = progress_option(),
) -> None:
    """Meta-train GRMP-IQA's prompts on distortion tasks; writes a checkpoint for fine-tuning and scoring."""
    loaded = load_recipe_with(recipe, variant, set_)
    out = prepare_run_folder(output, loaded, recipe, overwrite=overwrite, resume=resume)
    roots = parse_data(data)
    datasets_from_data(loaded, roots, set_)
    configure_logging()
    from ..inference.precision import resolve_device
    from ..training.meta_training import run_meta_recipe

    try:
        result = run_meta_recipe(loaded, roots, out, device=resolve_device(device.value), progress=progress,
                                 missing=missing.value, resume=resume)
    except (ValueError, FileNotFoundError, TypeError) as err:
        fail(str(err))
    last = result.epochs[-1]
    typer.echo(f"{len(result.tasks)} tasks, {len(result.epochs)} epochs: support loss {last.support_loss:.4f}, "
               f"query loss {last.query_loss:.4f}")
    typer.echo(f"checkpoint {result.checkpoint} (use as --init, model.init or `perceptiq score --model`)")


def finetune_command(
    recipe: str = recipe_option("grmp-fewshot", "Fine-tuning recipe (grmp-fewshot, grmp-full, grmp-*-ablation, "
                                                "grmp-lambda, gamma-qgr-fewshot) or a YAML file."),
    data: List[str] = data_option("NAME=ROOT for each dataset the recipe uses (repeatable); csv=labels.csv "
                                  "for your own labelled images."),
    shots: List[int] = typer.Option([], "--shots", metavar="N", min=1, show_default=False,
                                    help="Labelled images per run (repeatable; protocol.shots)."),
    splits: Optional[int] = splits_option("Number of seeded splits (protocol.split.n_splits).", min=1),
    lam: Optional[float] = typer.Option(None, "--lam", metavar="LAMBDA", min=0.0, help="QGR soft weight lambda (train.qgr_lambda)."),
    init: Optional[Path] = typer.Option(None, "--init", metavar="CHECKPOINT", help="Starting checkpoint, e.g. a meta-train output "
                                                             "(model.init)."),
    set_: List[str] = set_option(),
    variant: Optional[str] = variant_option(),
    output: Optional[Path] = run_output_option(),
    overwrite: bool = overwrite_option(),
    resume: bool = run_resume_option(),
    device: Device = device_option(),
    max_runs: Optional[int] = typer.Option(None, "--max-runs", metavar="N", min=1,
                                           help="Run only the first N train/test units (e.g. one split)."),
    missing: Missing = missing_option(),
    progress: bool = progress_option(),
    plots: bool = typer.Option(True, "--plots/--no-plots",
                               help="Write Fig. 4 PNGs (SRCC per epoch, gradient angle) per run."),
) -> None:
    """Fine-tune (few-shot or fully supervised) with QGR as a recipe says; results table, checkpoints, plots."""
    overrides = finetune_overrides(shots=shots, splits=splits, lam=lam, init=init) + list(set_)
    loaded = load_recipe_with(recipe, variant, overrides)
    out = prepare_run_folder(output, loaded, recipe, overwrite=overwrite, resume=resume)
    roots = parse_data(data)
    datasets_from_data(loaded, roots, set_)
    configure_logging()
    from ..inference.precision import resolve_device
    from ..training.experiment import run_experiment

    try:
        result = run_experiment(loaded, roots, out, device=resolve_device(device.value), progress=progress,
                                max_runs=max_runs, missing=missing.value, resume=resume)
    except (ValueError, FileNotFoundError, TypeError) as err:
        fail(str(err))
    typer.echo(result.result.to_markdown())
    typer.echo(f"results, checkpoints and logs in {out}")
    if plots:
        write_plots(result.run_dirs, out)


def write_plots(run_dirs, out: Path) -> None:
    """Fig. 4 PNGs of the runs; without matplotlib (the ``plots`` extra, not in the base install) a note
    says how to get them: the run, its results and checkpoints are complete either way."""
    from ..training.plots import plot_runs

    try:
        written = plot_runs(run_dirs, out)
    except ImportError:
        typer.echo("plots skipped: they need matplotlib (pip install 'perceptiq[plots]'); --no-plots "
                   "silences this", err=True)
        return
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
