"""Like-for-like ratios measured in one process: interleaved rounds, median of the per-round ratios.

On a machine shared with other work, absolute images/s move with the load (8 agents on 2 cores cut a
ViT-B/16 forward from 9 to under 1 image/s), but two measurements taken seconds apart in the same
process see nearly the same load. So each round measures, back to back and in an order that rotates
from round to round (slow drift then favours no one):

* ``bare``: a plain ``open_clip`` model of the same architecture (random weights), ``encode_image`` on
  a tensor batch, nothing of perceptiq's in it. In bf16 two variants, and the faster one is the bar:
  fp32 weights under ``torch.autocast`` (what perceptiq runs) and weights cast to bf16 (what a user
  might write instead);
* ``model``: the zero-shot model through ``Assessor.predict`` on the same tensor batch (perceptiq's
  autocast policy, the head and the cached text features included);
* ``end_to_end``: ``score_paths`` over JPEG files at the scorer's default decode placement, steady rate
  (after the first batch).

and the round's ratios are model / bare and end_to_end / model. With ``compile=True`` a fourth part,
``compiled``: the same model through ``torch.compile`` (compiled once, before the rounds; the compile time
is reported), giving compiled / model. The reported ratio is the median over rounds; the load average
is recorded with every round.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..inference import Assessor
from ..inference.loader import auto_decode_plan
from ..inference.precision import autocast_context
from .throughput import measure_end_to_end
from .timing import time_calls

PARTS = ("bare", "model", "end_to_end")


def bare_open_clip_forwards(arch: str, precision: str, device: torch.device,
                            seed: int = 0) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """``{variant: pixels -> image features}`` for a plain open_clip model of ``arch`` (random weights).

    fp32: ``{"fp32"}``; bf16: ``{"autocast", "bf16_weights"}`` (module docstring)."""
    import open_clip

    from ..backbones.architectures import register_perceptiq_configs

    register_perceptiq_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(arch, pretrained=None, device="cpu").eval().to(device)
    visual = model.visual
    if precision == "fp32":
        return {"fp32": lambda pixels: _run(visual, pixels, contextlib.nullcontext())}
    if precision != "bf16":
        raise ValueError(f"unknown precision '{precision}'")
    bf16_visual = _bf16_copy(visual)
    return {
        "autocast": lambda pixels: _run(visual, pixels, autocast_context("bf16", device)),
        "bf16_weights": lambda pixels: _run(bf16_visual, pixels.to(torch.bfloat16), contextlib.nullcontext()),
    }


def _bf16_copy(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module).to(torch.bfloat16)


def _run(visual: torch.nn.Module, pixels: torch.Tensor, context) -> torch.Tensor:
    with torch.inference_mode(), context:
        return visual(pixels)


@dataclass
class Round:
    """One round's figures (images/s) in the order they were taken, and the load average at its start."""

    index: int
    order: list[str]
    bare_by_variant: dict[str, float]
    model: float
    end_to_end: float              # steady rate (after the first batch)
    end_to_end_whole: float        # whole pass, start-up included
    load_average: float | None
    seconds: float = 0.0
    compiled: float | None = None  # torch.compile'd model forward, when asked for

    @property
    def bare(self) -> float:
        return max(self.bare_by_variant.values())

    def ratios(self) -> dict[str, float]:
        out = {"model_vs_bare": self.model / self.bare, "end_to_end_vs_model": self.end_to_end / self.model}
        if self.compiled is not None:
            out["compiled_vs_model"] = self.compiled / self.model
        return out

    def to_dict(self) -> dict:
        return {"index": self.index, "order": self.order, "bare_by_variant": self.bare_by_variant,
                "bare": self.bare, "model": self.model, "end_to_end": self.end_to_end,
                "end_to_end_whole": self.end_to_end_whole, "compiled": self.compiled,
                "load_average": self.load_average, "seconds": self.seconds, **self.ratios()}


@dataclass
class InterleavedResult:
    model: str
    arch: str
    precision: str
    batch_size: int
    n_images: int
    decode: str
    rounds: list[Round] = field(default_factory=list)
    compile_s: float | None = None

    def summary(self) -> dict:
        """Median of each figure and of each per-round ratio (the ratios the targets judge)."""
        if not self.rounds:
            return {}
        med = statistics.median
        out = {"bare": med(r.bare for r in self.rounds), "model": med(r.model for r in self.rounds),
               "end_to_end": med(r.end_to_end for r in self.rounds)}
        for name in ("model_vs_bare", "end_to_end_vs_model", "compiled_vs_model"):
            values = [r.ratios()[name] for r in self.rounds if name in r.ratios()]
            if values:
                out[name] = med(values)
                out[name + "_range"] = [min(values), max(values)]
        if self.compile_s is not None:
            out["compiled"] = med(r.compiled for r in self.rounds)
            out["compile_s"] = self.compile_s
        variants = self.rounds[0].bare_by_variant
        out["bare_by_variant"] = {v: med(r.bare_by_variant[v] for r in self.rounds) for v in variants}
        loads = [r.load_average for r in self.rounds if r.load_average is not None]
        out["load_average_range"] = [min(loads), max(loads)] if loads else None
        return out

    def to_dict(self) -> dict:
        return {"model": self.model, "arch": self.arch, "precision": self.precision,
                "batch_size": self.batch_size, "n_images": self.n_images, "decode": self.decode,
                "compile_s": self.compile_s, "rounds": [r.to_dict() for r in self.rounds],
                "summary": self.summary()}


def rotated(parts: tuple[str, ...], index: int) -> list[str]:
    """``parts`` rotated left by ``index`` (round k starts with the k-th part)."""
    shift = index % len(parts)
    return list(parts[shift:] + parts[:shift])


def _load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def measure_interleaved(name: str, assessor: Assessor, paths: list[str], *, arch: str, batch_size: int,
                        rounds: int, num_workers: int | None = None, min_seconds: float = 1.0,
                        seed: int = 0, compile: bool = False,
                        log: Callable[[str], None] = lambda _: None) -> InterleavedResult:
    """``rounds`` interleaved rounds of bare / model / end to end (module docstring) at ``batch_size``
    and ``assessor``'s precision; ``paths`` should hold at least 3 batches (a steady rate)."""
    device = assessor.device
    plan = auto_decode_plan(len(paths), batch_size, device, num_workers)
    result = InterleavedResult(model=name, arch=arch, precision=assessor.precision, batch_size=batch_size,
                               n_images=len(paths), decode=plan.describe())
    generator = torch.Generator(device="cpu").manual_seed(seed)
    pixels = torch.randn(batch_size, 3, assessor.image_size, assessor.image_size, generator=generator).to(device)
    bare = bare_open_clip_forwards(arch, assessor.precision, device, seed=seed)

    def rate(fn) -> float:
        timing = time_calls(lambda: fn(pixels), device, warmup=1, min_calls=2, min_seconds=min_seconds)
        return batch_size / timing.seconds

    for variant in bare.values():          # first calls (allocator, oneDNN kernel choice) outside the rounds
        variant(pixels)
    assessor.predict(pixels)
    parts = PARTS
    if compile:
        compiled_module = torch.compile(assessor.module)

        def compiled_forward(x):
            with torch.inference_mode(), autocast_context(assessor.precision, device):
                return compiled_module(x)

        started = time.perf_counter()
        compiled_forward(pixels)
        result.compile_s = time.perf_counter() - started
        parts = PARTS + ("compiled",)
        log(f"[{name}] torch.compile: first call {result.compile_s:.1f} s")
    for index in range(rounds):
        order = rotated(parts, index)
        started, load = time.perf_counter(), _load_average()
        figures: dict = {}
        for part in order:
            if part == "bare":
                figures["bare"] = {variant: rate(fn) for variant, fn in bare.items()}
            elif part == "model":
                figures["model"] = rate(assessor.predict)
            elif part == "compiled":
                figures["compiled"] = rate(compiled_forward)
            else:
                e2e = measure_end_to_end(name, assessor, paths, batch_size=batch_size, num_workers=num_workers)
                figures["end_to_end"] = (e2e.steady_images_per_s or e2e.images_per_s, e2e.images_per_s)
        one = Round(index=index, order=order, bare_by_variant=figures["bare"], model=figures["model"],
                    end_to_end=figures["end_to_end"][0], end_to_end_whole=figures["end_to_end"][1],
                    load_average=load, seconds=time.perf_counter() - started, compiled=figures.get("compiled"))
        result.rounds.append(one)
        ratios = one.ratios()
        log(f"[{name}] round {index + 1}/{rounds} {assessor.precision} bs={batch_size}: bare "
            + "/".join(f"{v:.2f}" for v in one.bare_by_variant.values())
            + f", model {one.model:.2f}, end to end {one.end_to_end:.2f} img/s; model/bare "
            f"{ratios['model_vs_bare']:.3f}, e2e/model {ratios['end_to_end_vs_model']:.3f}"
            + (f", compiled/model {ratios['compiled_vs_model']:.3f}" if "compiled_vs_model" in ratios else "")
            + f" (load {load})")
    return result
