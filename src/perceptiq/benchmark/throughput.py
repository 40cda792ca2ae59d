"""Inference throughput: the bare model on tensors already in place, and end to end from JPEG files.

* ``measure_model``: ``module(pixels)`` on a ``[B,3,S,S]`` tensor already on the device, under
  ``torch.inference_mode`` and the precision's autocast — exactly what ``Assessor.predict`` runs, minus
  the host→device copy. Optionally through ``torch.compile`` (its compilation time is the first call's
  time minus a steady call's, reported separately).
* ``measure_end_to_end``: ``perceptiq.inference.score_paths`` — the real streaming scorer with its
  DataLoader decode workers — over JPEG files, from listing to the last row; worker start-up included.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..inference import Assessor, score_paths
from ..inference.loader import auto_decode_plan
from ..inference.precision import autocast_context
from .timing import FigureRecord, synchronize, time_calls, track_peak_memory


@dataclass
class InferenceFigure(FigureRecord):
    """One row of the inference table (per-image FLOPs and MFU are filled in by the runner)."""

    model: str
    mode: str                    # "model" (tensors in place) | "end_to_end" (JPEG files -> scores)
    precision: str
    compiled: bool
    batch_size: int
    images_per_s: float
    seconds_per_batch: float
    n_images: int
    calls: int
    compile_s: float | None = None
    decode_workers: int | None = None           # DataLoader processes (0: decoded in process, see decode_threads)
    decode_threads: int | None = None
    n_errors: int = 0
    steady_images_per_s: float | None = None      # end to end after the first batch (see measure_end_to_end)
    flops_per_image: float | None = None
    achieved_flops_per_s: float | None = None
    mfu: float | None = None
    host_peak_bytes: int | None = None
    host_peak_reset: bool = False
    gpu_peak_bytes: int | None = None


def measure_model(name: str, module: torch.nn.Module, *, batch_size: int, image_size: int,
                  device: torch.device, precision: str, compiled: bool = False, min_seconds: float = 2.0,
                  min_calls: int = 1, seed: int = 0) -> InferenceFigure:
    """Images/s of ``module`` on a random ``[batch_size, 3, S, S]`` batch already on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device)
    runner = module
    if compiled:
        torch._dynamo.reset()   # each batch size gets its own, separately timed compilation
        runner = torch.compile(module)

    def call():
        with torch.inference_mode(), autocast_context(precision, device):
            runner(pixels)

    with track_peak_memory(device) as peak:
        timing = time_calls(call, device, warmup=1, min_calls=min_calls, min_seconds=min_seconds)
    figure = InferenceFigure(
        model=name, mode="model", precision=precision, compiled=compiled, batch_size=batch_size,
        images_per_s=batch_size / timing.seconds, seconds_per_batch=timing.seconds,
        n_images=batch_size * timing.calls, calls=timing.calls,
        compile_s=max(timing.first_call_s - timing.seconds, 0.0) if compiled else None,
    )
    figure.add_memory(peak)
    return figure


def measure_end_to_end(name: str, assessor: Assessor, paths: list[str], *, batch_size: int,
                       num_workers: int | None, view: str = "resize") -> InferenceFigure:
    """Images/s of ``score_paths`` over ``paths`` through ``view`` (default ``resize``: one 224 input per
    image, what the model-bound rows measure), decoding placed by ``num_workers`` (None: automatic).

    ``images_per_s`` is the whole run, worker start-up and the first batch's decode included.
    ``steady_images_per_s`` counts from the first batch's rows to the last row: the rate of a long run,
    once the decode workers are ahead of the model (what "millions of images" see); None with one batch.
    """
    rows, first_batch_at = [], None
    with track_peak_memory(assessor.device) as peak:
        start = time.perf_counter()
        for row in score_paths(assessor, paths, view=view, batch_size=batch_size, num_workers=num_workers,
                               progress=False):
            rows.append(row)
            if first_batch_at is None and len(rows) >= min(batch_size, len(paths)):
                first_batch_at = time.perf_counter()
        synchronize(assessor.device)
        end = time.perf_counter()
    elapsed = end - start
    errors = [row for row in rows if row["error"]]
    if len(rows) != len(paths):
        raise RuntimeError(f"end-to-end benchmark: {len(rows)} rows for {len(paths)} files")
    plan = auto_decode_plan(len(paths), batch_size, assessor.device, num_workers)
    n_batches = -(-len(paths) // batch_size)
    after_first = len(paths) - min(batch_size, len(paths))
    steady = after_first / (end - first_batch_at) if after_first and first_batch_at and end > first_batch_at else None
    figure = InferenceFigure(
        model=name, mode="end_to_end", precision=assessor.precision, compiled=False, batch_size=batch_size,
        images_per_s=len(paths) / elapsed, seconds_per_batch=elapsed / n_batches, n_images=len(paths),
        calls=n_batches, decode_workers=plan.workers, decode_threads=plan.threads, n_errors=len(errors), steady_images_per_s=steady,
    )
    figure.add_memory(peak)
    return figure
