"""``perceptiq train``, and what every recipe-running command shares (run folder, recipe loading, logging)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from .common import (Device, Missing, check_output_folder, configure_logging, data_option, device_option, fail,
                     missing_option, output_option, overwrite_option, parse_data, progress_option, recipe_option,
                     resume_option, set_option, variant_option)


def default_run_dir(recipe_name: str) -> Path:
    """runs/<recipe>[-<variant>]: where a recipe's outputs go unless --output says otherwise."""
    return Path("runs") / str(recipe_name).replace(":", "-")


def run_output_option(default_text: str = "runs/<recipe>[-VARIANT]"):
    return output_option(f"Run folder: checkpoints, logs, splits and results (default {default_text}).")


def run_resume_option():
    """``--resume`` of the recipe-running commands (train, finetune, meta-train); docs/training.md."""
    return resume_option("Continue the run in --output after it was stopped: finished units are read back, "
                         "the unit in progress continues from its last completed epoch. Refused when the "
                         "recipe, --set values or --data differ from the recorded run's.")


def load_recipe_with(recipe: str, variant: Optional[str], overrides: List[str]) -> dict:
    """The recipe, its variant, then the command line's overrides (so flags win over the variant)."""
    from ..recipes import apply_override, load_recipe, resolve_variant

    try:
        loaded = resolve_variant(load_recipe(recipe), variant)
        for override in overrides:
            apply_override(loaded, override)
    except (KeyError, ValueError) as err:
        fail(str(err).strip('"'))
    return loaded


def prepare_run_folder(output: Optional[Path], recipe: dict, recipe_name: str, *, overwrite: bool,
                       resume: bool = False) -> Path:
    """The run folder (default runs/<recipe>), refused before any work when it holds an earlier run
    (unless ``--overwrite``), or, with ``--resume``, when it holds something that is not a run."""
    out = output or default_run_dir(recipe.get("name", recipe_name))
    if os.environ.get("RANK", "0") == "0":   # under torchrun rank 0 writes; the others would see its files
        check_output_folder(out, overwrite=overwrite, resume=resume)
        if resume and out.is_dir() and any(out.iterdir()) and not (out / "run.json").is_file():
            fail(f"--resume: {out} holds no resumable run (no run.json; written by an older perceptiq, or not a "
                 "run folder); add --overwrite instead to start afresh there")
    if resume and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        fail("--resume is not supported under torchrun (each process's RNG state would have to be saved); "
             "rerun without --resume")
    return out


def datasets_from_data(recipe: dict, roots: dict[str, str], overrides: List[str]) -> None:
    """Run the recipe's protocol on the datasets the command line names with --data.

    A recipe's ``protocol.datasets`` is the paper's list (e.g. five datasets for grmp-fewshot); given
    ``--data csv=my_labels.csv`` the run is on that CSV, not a refusal for the five absent ones. The
    recipe's order is kept for the names it lists; names only in ``protocol.eval_datasets`` stay
    evaluation sets. Unchanged when ``--set protocol.datasets=...`` says otherwise, when no --data is given,
    and for pair protocols (``protocol.pairs``: cross-dataset, which pairs are meant is the recipe's).
    """
    protocol = recipe.get("protocol") or {}
    explicit = any(o.split("=", 1)[0].strip() == "protocol.datasets" for o in overrides)
    if not roots or explicit or protocol.get("pairs"):
        return
    listed = list(protocol.get("datasets") or [])
    evaluation_only = set(protocol.get("eval_datasets") or []) - set(listed)
    chosen = [n for n in listed if n in roots] + [n for n in roots if n not in listed and n not in evaluation_only]
    if chosen and chosen != listed:
        protocol["datasets"] = chosen
        typer.echo(f"datasets: {', '.join(chosen)} (from --data; recipe {recipe.get('name', '')} lists "
                   f"{', '.join(listed) or 'none'})", err=True)


def train_command(
    recipe: str = recipe_option(),
    data: List[str] = data_option("NAME=ROOT for each dataset the recipe uses (repeatable)."),
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
) -> None:
    """Train (and test) as a recipe says: checkpoints, per-epoch metrics and the final table."""
    loaded = load_recipe_with(recipe, variant, set_)
    from ..training.experiment import check_required_weights, run_experiment

    try:  # before the run folder is made or any data read
        check_required_weights(loaded)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    out = prepare_run_folder(output, loaded, recipe, overwrite=overwrite, resume=resume)
    roots = parse_data(data)
    datasets_from_data(loaded, roots, set_)
    configure_logging()
    from ..inference.precision import resolve_device
    from ..training.distributed import is_main_process

    try:
        result = run_experiment(loaded, roots, out, device=resolve_device(device.value), progress=progress,
                                max_runs=max_runs, missing=missing.value, resume=resume)
    except (ValueError, FileNotFoundError, TypeError) as err:
        fail(str(err))
    if not is_main_process():  # torchrun: rank 0 reports
        return
    typer.echo(result.result.to_markdown())
    typer.echo(f"results, checkpoints and logs in {out}")
