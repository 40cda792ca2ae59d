"""``perceptiq score``: one row per image (path, score, error) from the local streaming scorer or Ray."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import (Engine, Precision, Device, Scene, Task, backbone_option, batch_size_option, check_output_file,
                     check_output_folder, check_view, device_option, error_text, fail, model_option, output_option,
                     overwrite_option, precision_option, progress_option, resume_option, scene_option, task_option,
                     value, view_option, weights_option, workers_option)

LOCAL_SUFFIXES = (".csv", ".jsonl")
RAY_FILE_SUFFIXES = (".csv", ".jsonl", ".parquet")


def describe_model_line(info: dict, *extra: str) -> str:
    """``model NAME (backbone, weights=..., task=..., scene=..., ...)``: the header every command prints."""
    parts = [info["backbone"], f"weights={info['weights']}", f"task={info['task']}", f"scene={info['scene']}",
             *extra]
    return f"model {info['model']} ({', '.join(parts)})"


def score_command(
    paths: List[Path] = typer.Argument(..., metavar="PATH", help="Image files and/or folders (searched recursively)."),
    model: str = model_option(),
    backbone: Optional[str] = backbone_option(),
    weights: Optional[str] = weights_option(),
    task: Optional[Task] = task_option(),
    scene: Optional[Scene] = scene_option(),
    view: Optional[str] = view_option(),
    batch_size: int = batch_size_option(),
    workers: Optional[int] = workers_option(),
    device: Device = device_option(),
    precision: Precision = precision_option(),
    output: Optional[Path] = output_option("Write rows to FILE.csv or FILE.jsonl (with --engine ray also "
                                           "FILE.parquet or a folder for Parquet shards); default: a table."),
    resume: bool = resume_option("Skip paths already in --output and append to it (--engine ray: to a "
                                 ".csv/.jsonl file or a shard folder)."),
    overwrite: bool = overwrite_option(),
    max_pixels: int = typer.Option(200_000_000, "--max-pixels", metavar="N", min=1,
                                   help="Images with more pixels become error rows."),
    progress: bool = progress_option(),
    map_dir: Optional[Path] = typer.Option(None, "--map", metavar="DIR",
                                           help="Also write a quality map per image, DIR/<name>.png: the picture "
                                                "with its per-crop scores as a heat map (needs a crops view, "
                                                "e.g. --view crops:16)."),
    engine: Engine = typer.Option(Engine.local, "--engine", case_sensitive=False,
                                  help="local, or ray: a Ray Data pipeline (needs the ray extra: pip install "
                                       "'perceptiq[ray]'); --workers then sets a local Ray's CPUs."),
    address: Optional[str] = typer.Option(None, "--address", metavar="ADDRESS", help="--engine ray: the cluster to join (auto, or "
                                                                  "HEAD:6379 as `ray start --head` printed); "
                                                                  "default: a local Ray."),
) -> None:
    """Score images: one row per image (path, score, error); bad files become error rows."""
    # Everything that can be refused is refused here, before a model is loaded (which takes seconds).
    view = check_view(view)
    if resume and output is None:
        fail("--resume needs --output" + (" (a .csv/.jsonl file or a shard folder)" if engine is Engine.ray
                                          else " FILE"))
    if map_dir is not None:
        if engine is Engine.ray:
            fail("--map works with --engine local only")
        if view is not None and not view.startswith("crops:"):
            fail(f"--map needs per-crop scores: a crops view such as --view crops:16 (not --view {view})")
        check_output_folder(map_dir, overwrite=overwrite or resume, what="--map")
    if engine is Engine.ray:
        _check_ray_output(output, overwrite, resume)
    else:
        if address is not None:
            fail("--address needs --engine ray")
        check_output_file(output, suffixes=LOCAL_SUFFIXES, overwrite=overwrite, resume=resume)

    from ..inference.files import DEFAULT_IMAGE_EXTENSIONS, iter_image_files

    files = [str(p) for p in iter_image_files(paths)]
    if not files:
        fail(f"no images found in {', '.join(str(p) for p in paths)} (searched recursively for "
             f"{' '.join(sorted(DEFAULT_IMAGE_EXTENSIONS))})", code=1)
    if engine is Engine.ray:
        _score_with_ray(files, model=model, backbone=backbone, weights=weights, task=task, scene=scene,
                        device=device, precision=precision, max_pixels=max_pixels, view=view,
                        batch_size=batch_size, output=output, address=address, workers=workers,
                        progress=progress, resume=resume)
        return

    from ..backbones.weights import WeightsNotFoundError
    from ..inference import RunSummary, default_output_columns, load_model, open_writer, read_done_paths, score_paths
    from ..inference.writers import ResultFileError, table_decimals

    try:
        assessor = load_model(model, backbone=backbone, weights=weights, task=value(task), scene=value(scene),
                              device=device.value, precision=precision.value, max_pixels=max_pixels, view=view)
    except (WeightsNotFoundError, KeyError, ValueError, FileNotFoundError) as err:
        fail(error_text(err))
    info = assessor.describe()
    typer.echo(describe_model_line(info, info["device"], info["precision"], f"view {info['view']}"), err=True)
    maps = None
    if map_dir is not None:
        if assessor.view.kind != "crops":
            fail(f"--map needs per-crop scores, and {info['model']}'s view is {info['view']}: add a crops view "
                 "such as --view crops:16")
        from ..imaging.maps import QualityMapWriter

        maps = QualityMapWriter(map_dir, higher_is_better=info["higher_is_better"])
    columns = default_output_columns(assessor)
    summary = RunSummary()
    try:
        done = read_done_paths(output) if resume and output is not None else set()
        writer = open_writer(output, columns=columns, resume=resume,
                             score_decimals=table_decimals(str(info["precision"])))
    except ResultFileError as err:
        fail(str(err))
    with writer:
        for row in score_paths(assessor, files, batch_size=batch_size, num_workers=workers, writer=writer,
                             skip=done, summary=summary, progress=progress,
                             extra_columns=tuple(c for c in columns if c not in ("path", "score", "error"))):
            if maps is not None and row["score"] is not None:
                try:
                    maps.write(row["path"], row["boxes"], row["crop_scores"])
                except Exception as err:  # noqa: BLE001 — a map is a by-product; the scores go on
                    typer.echo(f"warning: no quality map for {row['path']} ({type(err).__name__}: {err})", err=True)
    typer.echo(summary.format(), err=True)
    if maps is not None:
        typer.echo(f"wrote {maps.written} quality map(s) to {map_dir}", err=True)
    if summary.n_scored == 0 and summary.n_skipped == 0:
        raise typer.Exit(1)


def _check_ray_output(output: Optional[Path], overwrite: bool, resume: bool) -> None:
    if output is None or "://" in str(output):   # an object-store URI is checked by Ray when it writes
        if resume and output is not None:
            fail(f"--resume: {output} is an object-store URI; the driver reads the done paths from a local "
                 "(or mounted) shard folder")
        return
    if output.suffix.lower() == ".parquet" and resume:
        fail(f"--resume: {output} is a single Parquet file, unreadable until the run that writes it closes "
             "it; write a shard folder (or .csv/.jsonl) to be able to resume")
    if output.suffix.lower() in RAY_FILE_SUFFIXES:
        check_output_file(output, suffixes=RAY_FILE_SUFFIXES, overwrite=overwrite, resume=resume)
    else:  # a folder of shards: new shards never mix with an earlier run's unless resuming that run
        if not resume and output.is_dir() and any(output.iterdir()):
            fail(f"--output {output} exists and is not empty; a shard folder is never overwritten (old shards "
                 "would mix with new ones): give a new folder, or --resume to continue the run that wrote it")
        check_output_folder(output, overwrite=False, resume=resume)


def _score_with_ray(files, *, model, backbone, weights, task, scene, device, precision, max_pixels, view,
                    batch_size, output, address, workers, progress, resume) -> None:
    from ..backbones.weights import WeightsNotFoundError
    from ..inference.ray_engine import RayNotInstalledError, score_with_ray

    def echo_model(info: dict) -> None:
        typer.echo(describe_model_line(info, "engine ray", f"view {info['view']}"), err=True)

    if output is not None and output.suffix.lower() in RAY_FILE_SUFFIXES and output.exists() and not resume:
        output.unlink()   # --overwrite was given (checked above); the Ray engine writes a new file
    try:
        summary = score_with_ray(files, model=model, backbone=backbone, weights=weights, task=value(task),
                                 scene=value(scene), device=device.value, precision=precision.value,
                                 max_pixels=max_pixels, view=view, batch_size=batch_size, output=output,
                                 address=address, num_cpus=workers, progress=progress, on_model=echo_model,
                                 resume=resume)
    except (RayNotInstalledError, WeightsNotFoundError, KeyError, ValueError, FileNotFoundError,
            FileExistsError) as err:
        fail(error_text(err))
    typer.echo(summary.format(), err=True)
    if summary.n_scored == 0 and summary.n_skipped == 0:
        raise typer.Exit(1)
