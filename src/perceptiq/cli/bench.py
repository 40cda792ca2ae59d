"""``perceptiq bench``: parse flags, call ``perceptiq.benchmark.run_benchmark``, print the table, write JSON."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer


def _split(text: Optional[str], what: str, cast=str) -> Optional[tuple]:
    """"a,b,c" -> ("a", "b", "c") (None stays None); a bad item names the flag."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise typer.BadParameter(f"{what}: give at least one value")
    try:
        return tuple(cast(t) for t in items)
    except ValueError:
        raise typer.BadParameter(f"{what}: '{text}' is not a comma-separated list of {cast.__name__}") from None


def bench_command(
    quick: bool = typer.Option(False, "--quick", help="Small, fast run (one batch size, few images; <5 min on 2 CPU cores)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    out: Path = typer.Option(Path("bench-results.json"), help="JSON file for every figure."),
    models: str = typer.Option("zero-shot,gamma,grmp-iqa", help="Models to benchmark (comma-separated)."),
    batch_sizes: Optional[str] = typer.Option(None, help="e.g. 1,8,32 (default: quick 8; full 1,8,32; GPU adds 128)."),
    precisions: Optional[str] = typer.Option(None, help="fp32,bf16 (default: fp32, plus bf16 where native)."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile",
                                           help="Also time torch.compile (default: on, off with --quick)."),
    peer: bool = typer.Option(True, "--peer/--no-peer", help="Time pyiqa CLIP-IQA/LIQE in a separate venv."),
    arch: str = typer.Option("ViT-B-16", help="open_clip architecture (test-tiny for a smoke run)."),
    weights: str = typer.Option("random", help="Backbone weights (random: no download; speed is the same)."),
    training: str = typer.Option("gamma-mixed,grmp-qgr,grmp-meta", help="Training benchmarks ('' for none)."),
    n_images: Optional[int] = typer.Option(None, min=1, help="JPEGs for the end-to-end figures."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch intra-op threads (default: torch's)."),
    decode_workers: Optional[int] = typer.Option(None, min=0, help="Scorer decode workers (default: automatic)."),
    min_seconds: Optional[float] = typer.Option(None, min=0.0, help="Minimum timed seconds per model figure."),
    train_batch_size: Optional[int] = typer.Option(None, min=1, help="Images per training step (default: quick 2, full 8)."),
    train_steps: Optional[int] = typer.Option(None, min=1, help="Timed Trainer steps (default: quick 1, full 2)."),
) -> None:
    """Measure throughput (model-bound and end to end from JPEG), FLOPs, MFU, training speed and the pyiqa peer."""
    from perceptiq.benchmark import BenchConfig, format_report, run_benchmark, write_json

    config = BenchConfig(
        quick=quick, device=device, arch=arch, weights=weights,
        models=_split(models, "--models"), batch_sizes=_split(batch_sizes, "--batch-sizes", int),
        precisions=_split(precisions, "--precisions"), compile=compile, peer=peer,
        training=tuple(t.strip() for t in training.split(",") if t.strip()),
        n_images=n_images, threads=threads, decode_workers=decode_workers, min_seconds=min_seconds,
        train_batch_size=train_batch_size, train_steps=train_steps,
        command="perceptiq " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    try:
        result = run_benchmark(config, log=lambda text: typer.echo(text, err=True))
    except ValueError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    typer.echo(format_report(result))
    path = write_json(result, out)
    typer.echo(f"\nwrote {path}")
