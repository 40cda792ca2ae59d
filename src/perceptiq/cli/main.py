"""``perceptiq`` command line. Each command parses flags and calls a package function; no logic here."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .common import Device, Engine, Precision, Scene, Task, _fail, _parse_data

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="perceptiq: how good an image looks (CLIP-based quality and aesthetics assessment).")


@app.command()
def score(
    paths: List[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    model: str = typer.Option("zero-shot", help="Registered model name or a checkpoint path."),
    backbone: Optional[str] = typer.Option(None, help="open_clip architecture, e.g. ViT-B-16 or test-tiny."),
    weights: Optional[str] = typer.Option(None, help="openai | other open_clip tag | FILE | uniqa:FILE | random "
                                                     "(default: $PERCEPTIQ_WEIGHTS, else the model's)."),
    task: Optional[Task] = typer.Option(None, help="quality or aesthetics (default: the model's first)."),
    scene: Optional[Scene] = typer.Option(None, help="Scene prompts (Gamma Table 11); auto = per-image."),
    batch_size: int = typer.Option(32, min=1),
    workers: Optional[int] = typer.Option(None, min=0, help="Decode worker processes (default: auto)."),
    device: Device = typer.Option(Device.auto),
    precision: Precision = typer.Option(Precision.auto, help="auto = bf16 where the hardware has it."),
    output: Optional[Path] = typer.Option(None, help="Write rows to FILE.csv or FILE.jsonl (else a table)."),
    resume: bool = typer.Option(False, help="Skip paths already in --output and append to it."),
    max_pixels: int = typer.Option(200_000_000, help="Images with more pixels become error rows."),
    progress: bool = typer.Option(True, help="Show a progress bar on stderr."),
    engine: Engine = typer.Option(Engine.local, help="local, or ray: a Ray Data pipeline (pip install "
                                  "'perceptiq[ray]'); with ray, --output may also be FILE.parquet or a folder "
                                  "for Parquet shards, and --workers sets a local Ray's CPUs."),
    address: Optional[str] = typer.Option(None, help="--engine ray: the cluster to join (auto, or HEAD:6379 as "
                                                     "`ray start --head` printed); default: a local Ray."),
) -> None:
    """Score images: one row per image (path, score, error); bad files become error rows."""
    from ..backbones import WeightsNotFoundError
    from ..inference import RunSummary, default_output_columns, load_model, open_writer, read_done_paths, score_paths

    def _echo_model(info: dict) -> None:
        typer.echo(f"model {info['model']} ({info['backbone']}, weights={info['weights']}, task={info['task']}, "
                   f"scene={info['scene']}, engine ray)", err=True)

    if engine is Engine.ray:
        from ..inference.ray_engine import RayNotInstalledError, score_with_ray

        if resume:
            _fail("--resume works with --engine local only")
        try:
            summary = score_with_ray([str(p) for p in paths], model=model, backbone=backbone, weights=weights,
                                     task=task.value if task else None, scene=scene.value if scene else None,
                                     device=device.value, precision=precision.value, max_pixels=max_pixels,
                                     batch_size=batch_size, output=output, address=address, num_cpus=workers,
                                     progress=progress, on_model=_echo_model)
        except (RayNotInstalledError, WeightsNotFoundError, KeyError, ValueError, FileNotFoundError,
                FileExistsError) as err:
            _fail(str(err).strip('"'))
        typer.echo(summary.format(), err=True)
        if summary.n_scored == 0:
            raise typer.Exit(1)
        return
    if address is not None:
        _fail("--address needs --engine ray")
    if resume and output is None:
        _fail("--resume needs --output FILE")
    try:
        assessor = load_model(model, backbone=backbone, weights=weights, task=task.value if task else None,
                              scene=scene.value if scene else None, device=device.value,
                              precision=precision.value, max_pixels=max_pixels)
    except (WeightsNotFoundError, KeyError, ValueError, FileNotFoundError) as err:
        _fail(str(err).strip('"'))
    columns = default_output_columns(assessor)
    done = read_done_paths(output) if resume and output is not None and output.exists() else set()
    summary = RunSummary()
    info = assessor.describe()
    typer.echo(f"model {info['model']} ({info['backbone']}, weights={info['weights']}, task={info['task']}, "
               f"scene={info['scene']}, {info['device']}, {info['precision']})", err=True)
    with open_writer(output, columns=columns, resume=resume) as writer:
        for _ in score_paths(assessor, [str(p) for p in paths], batch_size=batch_size, num_workers=workers,
                             writer=writer, skip=done, summary=summary, progress=progress,
                             extra_columns=tuple(c for c in columns if c not in ("path", "score", "error"))):
            pass
    typer.echo(summary.format(), err=True)
    if summary.n_scored == 0 and summary.n_skipped == 0:
        raise typer.Exit(1)


@app.command("models")
def models_command(
    archs: bool = typer.Option(False, "--archs", help="List CLIP architectures instead."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List registered assessment models and their metadata."""
    if archs:
        from ..backbones import list_architectures

        typer.echo("\n".join(list_architectures()))
        return
    from ..models import list_models

    specs = list_models()
    if as_json:
        typer.echo(json.dumps([s.__dict__ for s in specs], indent=2, default=list))
        return
    for s in specs:
        lo, hi = s.score_range
        direction = "higher is better" if s.higher_is_better else "lower is better"
        typer.echo(f"{s.name}\n  {s.description}\n  tasks: {', '.join(s.tasks)}; scenes: "
                   f"{', '.join(s.scenes) or '-'}; score range [{lo:g}, {hi:g}], {direction}\n"
                   f"  prompts: {s.prompts}\n  default backbone: {s.default_backbone} "
                   f"(weights {s.default_weights}); paper: {s.paper}\n")


def _load_labeled(dataset: str, root: Path, missing: str):
    from ..data import load_dataset

    try:
        return load_dataset(dataset, root, missing=missing)
    except (KeyError, ValueError, FileNotFoundError) as err:
        _fail(str(err).strip('"'))


def _make_splits(labeled, *, mode: str | None, n_splits: int, base_seed: int, k: int | None,
                 fraction: float | None, train_fraction: float):
    """Default protocol: the GRMP/Gamma split for the dataset (by reference when it is synthetic)."""
    from ..data.splits import BY_REFERENCE, RANDOM, make_repeated_splits

    base = BY_REFERENCE if labeled.spec.synthetic else RANDOM
    mode = mode or base
    options = {"train_fraction": train_fraction}
    if mode in ("k_shot", "subset_fraction"):
        options.update(base_mode=base, k=k, fraction=fraction)
    return make_repeated_splits(labeled.samples, labeled.spec.name, mode, n_splits, base_seed=base_seed, **options)


@app.command("datasets")
def datasets_command() -> None:
    """List every dataset perceptiq reads, its expected layout and how to point perceptiq at it."""
    from ..data import describe_datasets

    typer.echo(describe_datasets())


@app.command("splits")
def splits_command(
    dataset: str = typer.Option(..., help="Registered dataset name (see `perceptiq datasets`)."),
    root: Path = typer.Option(..., help="Dataset folder (or the CSV file for CSV-read datasets)."),
    output: Path = typer.Option(..., "--output", "-o", help="Split file to write (.json)."),
    mode: Optional[str] = typer.Option(None, help="random | by_reference | k_shot | subset_fraction | "
                                                  "whole_test | whole_train (default: by_reference for "
                                                  "synthetic datasets, else random)."),
    n_splits: int = typer.Option(10, min=1),
    base_seed: int = typer.Option(0),
    k: Optional[int] = typer.Option(None, help="k for k_shot (50/100/200 in GRMP Table 1)."),
    fraction: Optional[float] = typer.Option(None, help="Training fraction for subset_fraction."),
    train_fraction: float = typer.Option(0.8),
    missing: str = typer.Option("error", help="error | skip: what to do about listed but absent images."),
) -> None:
    """Write seeded, reproducible train/test splits of a dataset to JSON."""
    from ..data.splits import save_splits

    labeled = _load_labeled(dataset, root, missing)
    splits = _make_splits(labeled, mode=mode, n_splits=n_splits, base_seed=base_seed, k=k, fraction=fraction,
                          train_fraction=train_fraction)
    save_splits(output, splits)
    typer.echo(f"wrote {len(splits)} {splits[0].mode} split(s) of {labeled.spec.name} "
               f"({len(splits[0].train)} train / {len(splits[0].test)} test) to {output}")


@app.command("evaluate")
def evaluate_command(
    dataset: str = typer.Option(..., help="Registered dataset name (see `perceptiq datasets`)."),
    root: Path = typer.Option(..., help="Dataset folder (or the CSV file for CSV-read datasets)."),
    model: str = typer.Option("zero-shot", help="Registered model name or a checkpoint path."),
    backbone: Optional[str] = typer.Option(None),
    weights: Optional[str] = typer.Option(None),
    task: Optional[Task] = typer.Option(None, help="Default: the dataset's task."),
    scene: Optional[Scene] = typer.Option(None),
    splits: Optional[str] = typer.Option(None, help="N (that many seeded splits, test parts scored) or a "
                                                    "split file; default: the whole dataset is the test set."),
    mode: Optional[str] = typer.Option(None, help="Split mode when --splits is a number."),
    base_seed: int = typer.Option(0),
    batch_size: int = typer.Option(32, min=1),
    workers: Optional[int] = typer.Option(None, min=0),
    device: Device = typer.Option(Device.auto),
    precision: Precision = typer.Option(Precision.auto),
    missing: str = typer.Option("error", help="error | skip"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the table (.md or .csv)."),
) -> None:
    """SRCC / PLCC (plain and logistic) / KRCC / RMSE of a model on a dataset, median over splits."""
    from ..data.splits import load_splits, make_repeated_splits
    from ..evaluation.protocols import evaluate_on_splits
    from ..inference import load_model

    labeled = _load_labeled(dataset, root, missing)
    if splits is None:
        split_list = make_repeated_splits(labeled.samples, labeled.spec.name, "whole_test")
    elif splits.isdigit():
        split_list = _make_splits(labeled, mode=mode, n_splits=int(splits), base_seed=base_seed, k=None,
                                  fraction=None, train_fraction=0.8)
    else:
        split_list = load_splits(splits)
    try:
        assessor = load_model(model, backbone=backbone, weights=weights,
                              task=(task.value if task else labeled.spec.task),
                              scene=scene.value if scene else None, device=device.value, precision=precision.value)
    except (KeyError, ValueError, FileNotFoundError) as err:
        _fail(str(err).strip('"'))

    def predict(samples):
        return assessor.score([str(s.path) for s in samples], batch_size=batch_size, num_workers=workers)

    result = evaluate_on_splits(predict, labeled.samples, split_list, predict_once=True)
    typer.echo(result.to_markdown())
    if output is not None:
        result.write(output)


@app.command("synthesize")
def synthesize_command(
    source: Path = typer.Argument(..., help="Folder of pristine images (searched recursively)."),
    output: Path = typer.Argument(..., help="Folder to write reference/, distorted/, labels.csv, manifest.json."),
    types: Optional[str] = typer.Option(None, help="Comma-separated distortion types (default: all 25)."),
    levels: str = typer.Option("1,2,3,4,5", help="Comma-separated levels 1..5."),
    seed: int = typer.Option(0),
    max_side: int = typer.Option(512, help="Sources are shrunk (never enlarged) to this longest side."),
    image_format: str = typer.Option("png", "--format", help="png or jpg for the distorted images."),
    overwrite: bool = typer.Option(False),
) -> None:
    """Turn pristine images into a KADID-style labelled dataset (25 types x 5 levels), read as generic CSV."""
    from ..data.synthetic import synthesize

    try:
        labels = synthesize(source, output, types=types.split(",") if types else None,
                            levels=tuple(int(v) for v in levels.split(",")), seed=seed, max_side=max_side,
                            image_format=image_format, overwrite=overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        _fail(str(err))
    manifest = json.loads((labels.parent / "manifest.json").read_text())
    typer.echo(f"wrote {manifest.get('n_rows')} distorted images of {manifest.get('n_references')} references "
               f"to {labels} ({len(manifest.get('skipped', []))} source files skipped)")


def _run_recipe(recipe_name: str, data: list[str], overrides: list[str], variant: Optional[str], out: Optional[Path],
                device: Device, max_runs: Optional[int], missing: str, progress: bool) -> None:
    import logging

    from ..inference.precision import resolve_device
    from ..recipes import load_recipe
    from ..training.experiment import run_experiment

    try:
        recipe = load_recipe(recipe_name, overrides, variant)
    except (KeyError, ValueError) as err:
        _fail(str(err).strip('"'))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = out or Path("runs") / str(recipe.get("name", recipe_name)).replace(":", "-")
    try:
        result = run_experiment(recipe, _parse_data(data), out, device=resolve_device(device.value),
                                progress=progress, max_runs=max_runs, missing=missing)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    from ..training.distributed import is_main_process

    if not is_main_process():  # torchrun: rank 0 reports
        return
    typer.echo(result.result.to_markdown())
    typer.echo(f"results, checkpoints and logs in {out}")


_DATA_HELP = "NAME=ROOT for each dataset the recipe uses (repeatable)."
_SET_HELP = "Override a recipe value: section.key=value (repeatable), e.g. train.epochs=2."


@app.command("train")
def train_command(
    recipe: str = typer.Option(..., help="Shipped recipe name (see `perceptiq recipes`) or a YAML file."),
    data: List[str] = typer.Option([], "--data", help=_DATA_HELP),
    set_: List[str] = typer.Option([], "--set", help=_SET_HELP),
    variant: Optional[str] = typer.Option(None, help="A named variant of the recipe (e.g. an ablation row)."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default runs/<recipe>)."),
    device: Device = typer.Option(Device.auto),
    max_runs: Optional[int] = typer.Option(None, help="Run only the first N train/test units."),
    missing: str = typer.Option("error", help="error | skip: listed but absent images."),
    progress: bool = typer.Option(True),
) -> None:
    """Train (and test) as a recipe says: checkpoints, per-epoch metrics and the final table."""
    _run_recipe(recipe, data, set_, variant, out, device, max_runs, missing, progress)


@app.command("recipes")
def recipes_command() -> None:
    """List the shipped recipes (one per experiment of either paper)."""
    from ..recipes import list_recipes, load_recipe

    for name in list_recipes():
        recipe = load_recipe(name)
        typer.echo(f"{name}\n  {recipe.get('description', '')}\n  paper: {recipe.get('paper', '')}")
        if recipe.get("variants"):
            typer.echo(f"  variants: {', '.join(recipe['variants'])}")


# Commands that live in their own modules (their heavy imports happen only when they run).
from .gamma import experts_command, info_command  # noqa: E402
from .bench import bench_command  # noqa: E402
from .grmp import finetune_command, meta_train_command  # noqa: E402
from ..training.builtin_command import build_tiny_command  # noqa: E402
from .serve import serve_command  # noqa: E402

app.command("serve")(serve_command)
app.command("experts")(experts_command)
app.command("info")(info_command)
app.command("meta-train")(meta_train_command)
app.command("finetune")(finetune_command)
app.command("bench")(bench_command)
app.command("build-tiny")(build_tiny_command)


def main() -> None:
    """Console entry point (``perceptiq``)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
