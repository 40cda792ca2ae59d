"""``perceptiq bench``: parse flags, call ``perceptiq.benchmark.run_benchmark``, print the table, write JSON."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from .common import (Device, check_output_file, device_option, fail, output_option, overwrite_option, progress_option,
                     workers_option)


def _split(text: Optional[str], what: str, cast=str, choices: Optional[tuple] = None) -> Optional[tuple]:
    """"a,b,c" -> ("a", "b", "c") (None stays None); a bad item names the flag and the allowed values."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise typer.BadParameter(f"{what}: give at least one value")
    try:
        values = tuple(cast(t) for t in items)
    except ValueError:
        raise typer.BadParameter(f"{what}: '{text}' is not a comma-separated list of {cast.__name__}") from None
    if choices is not None:
        unknown = [v for v in values if v not in choices]
        if unknown:
            raise typer.BadParameter(f"{what}: {', '.join(map(str, unknown))} not among {', '.join(choices)}")
    return values


def _views(text: str) -> tuple:
    """--views "resize,crops:15,full" -> views. Commas also separate a view's own options
    ("crops:10,random,full"): a part that does not start a new view belongs to the one before. Checked
    here, before any model is built."""
    from perceptiq.imaging.views import ViewError, parse_view

    if not text.strip():
        return ()
    views, current = [], ""
    for part in (p.strip() for p in text.split(",")):
        if part.split(":")[0].split("=")[0] in ("resize", "crops", "full") or not current:
            if current:
                views.append(current)
            current = part
        else:
            current += "," + part
    views.append(current)
    try:
        return tuple(str(parse_view(v)) for v in views)
    except ViewError as err:
        raise typer.BadParameter(f"--views: {err}") from None


MODELS = ("zero-shot", "gamma", "grmp-iqa")
PRECISIONS = ("fp32", "bf16")
TRAINING = ("gamma-mixed", "grmp-qgr", "grmp-meta")


def bench_command(
    quick: bool = typer.Option(False, "--quick/--full", help="Small, fast run (one batch size, few images; <5 min "
                                                            "on 2 CPU cores) or the full one."),
    device: Device = device_option(),
    output: Path = output_option("JSON file for every figure.", Path("bench-results.json")),
    overwrite: bool = overwrite_option(),
    models: str = typer.Option(",".join(MODELS), "--models", metavar="LIST", help=f"Models to benchmark, comma-separated "
                                                                  f"({', '.join(MODELS)})."),
    batch_sizes: Optional[str] = typer.Option(None, "--batch-sizes", metavar="LIST", help="e.g. 1,8,32 (default: quick 8; full "
                                                                         "1,8,32; GPU adds 128)."),
    precisions: Optional[str] = typer.Option(None, "--precisions", metavar="LIST", help="Comma-separated, of fp32, bf16 "
                                                                        "(default: fp32, plus bf16 where native)."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile",
                                           help="Also time torch.compile (default: on, off with --quick)."),
    peer: bool = typer.Option(True, "--peer/--no-peer", help="Time pyiqa CLIP-IQA/LIQE in a separate venv."),
    backbone: str = typer.Option("ViT-B-16", "--backbone", metavar="ARCH", help="open_clip architecture (test-tiny for a smoke "
                                                                "run)."),
    weights: str = typer.Option("random", "--weights", metavar="WEIGHTS", help="Backbone weights (random: no download; speed is the "
                                                            "same)."),
    training: str = typer.Option(",".join(TRAINING), "--training", metavar="LIST", help=f"Training benchmarks, comma-separated "
                                                                        f"({', '.join(TRAINING)}; '' for none)."),
    n_images: Optional[int] = typer.Option(None, "--n-images", metavar="N", min=1, help="JPEGs for the end-to-end figures."),
    threads: Optional[int] = typer.Option(None, "--threads", metavar="N", min=1, help="torch intra-op threads (default: "
                                                                         "torch's)."),
    workers: Optional[int] = workers_option(),
    min_seconds: Optional[float] = typer.Option(None, "--min-seconds", metavar="SECONDS", min=0.0,
                                                help="Minimum timed seconds per model figure."),
    train_batch_size: Optional[int] = typer.Option(None, "--train-batch-size", metavar="N", min=1,
                                                   help="Images per training step (default: quick 2, full 8)."),
    train_steps: Optional[int] = typer.Option(None, "--train-steps", metavar="N", min=1,
                                              help="Timed Trainer steps (default: quick 1, full 2)."),
    rounds: Optional[int] = typer.Option(None, "--rounds", metavar="N", min=0,
                                         help="Interleaved same-process rounds for the ratio targets (model vs bare "
                                              "open_clip, end to end vs model; default: quick 3, full 5; 0: none)."),
    rounds_batch: Optional[int] = typer.Option(None, "--rounds-batch", metavar="N", min=1,
                                               help="Batch size of those rounds (default: quick 8, full 32 = the "
                                                    "scorer's default)."),
    views: str = typer.Option("resize,crops:15,full", "--views", metavar="LIST",
                              help="Views to time end to end (zero-shot, on the peer's files; '' for none). "
                                   "LIQE is compared with crops:15, CLIP-IQA with full."),
    progress: bool = progress_option(),
) -> None:
    """Measure throughput (model-bound and end to end from JPEG), FLOPs, MFU, training speed and the pyiqa peer."""
    check_output_file(output, suffixes=(".json",), overwrite=overwrite)
    from perceptiq.benchmark import BenchConfig, format_report, run_benchmark, write_json

    config = BenchConfig(
        quick=quick, device=device.value, arch=backbone, weights=weights,
        models=_split(models, "--models", choices=MODELS), batch_sizes=_split(batch_sizes, "--batch-sizes", int),
        precisions=_split(precisions, "--precisions", choices=PRECISIONS), compile=compile, peer=peer,
        training=_split(training, "--training", choices=TRAINING) if training.strip() else (),
        n_images=n_images, threads=threads, decode_workers=workers, min_seconds=min_seconds,
        train_batch_size=train_batch_size, train_steps=train_steps, interleaved_rounds=rounds,
        interleaved_batch=rounds_batch, views=_views(views),
        command="perceptiq " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    try:
        result = run_benchmark(config, log=(lambda text: typer.echo(text, err=True)) if progress else (lambda _: None))
    except ValueError as err:
        fail(str(err))
    typer.echo(format_report(result))
    path = write_json(result, output)
    typer.echo(f"\nwrote {path}")
