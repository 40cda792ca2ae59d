"""What each view costs, end to end from the same JPEG files: ``resize``, ``crops:N``, ``full``.

For every view: images/s of ``score_paths`` (decode, view, model, rows), model inputs per image, the
pixels the model sees per image (megapixels), FLOPs per image counted on a real file's view input, and
for ``full`` seconds per megapixel. Views are timed in interleaved rounds (order rotated per round) so
that the ratio the issue sets, ``crops:N`` seconds per image ÷ (N × ``resize`` seconds per image), is
taken within each round (robust to a shared machine's load) and reported as the median.

Crops are batched: ``score_paths`` hands ``Assessor.predict_inputs`` every crop of a batch of images,
in forward passes of ``batch_size`` inputs, so N crops cost N inputs of the same forward a ``resize``
input takes; what ``crops:N`` adds beyond that is decoding at native resolution (no JPEG draft) and
cutting N crops.
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ..imaging import parse_view
from ..inference import Assessor
from .flops import count_flops
from .interleaved import rotated
from .throughput import measure_end_to_end

DEFAULT_VIEWS = ("resize", "crops:15", "full")


@dataclass
class ViewCost:
    """The fixed per-image facts of a view on the benchmark's files (from one real file)."""

    view: str
    inputs_per_image: int
    input_shape: list[int]              # [3, h, w] of one model input
    megapixels_per_image: float         # pixels the model sees per image (all inputs), / 1e6
    flops_per_image: int


def view_cost(assessor: Assessor, view: str, path: str, *, batch_size: int) -> ViewCost:
    """Count the FLOPs of scoring one file through ``view`` (its real inputs, as ``score_paths`` batches
    them); the text features are cached already, so this is the per-image work."""
    view_input = assessor.view_input(path, view)
    counted = count_flops(lambda: assessor.predict_inputs([view_input], max_batch=batch_size))
    _, _, h, w = view_input.pixels.shape
    return ViewCost(view=str(parse_view(view)), inputs_per_image=len(view_input), input_shape=[3, int(h), int(w)],
                    megapixels_per_image=len(view_input) * h * w / 1e6, flops_per_image=counted.total)


@dataclass
class ViewsResult:
    model: str
    precision: str
    batch_size: int
    n_images: int
    decode: str
    costs: dict[str, ViewCost]
    rounds: list[dict] = field(default_factory=list)     # {"order", "load_average", "images_per_s": {view: x}}

    def summary(self) -> dict:
        """Per view: median images/s and the derived figures; ``crops_cost_vs_n_resize`` per crops view
        (median over rounds of the within-round ratio) and seconds per megapixel."""
        out: dict = {"views": {}}
        for view, cost in self.costs.items():
            rates = [r["images_per_s"][view] for r in self.rounds if view in r["images_per_s"]]
            if not rates:
                continue
            rate = statistics.median(rates)
            out["views"][view] = {
                "images_per_s": rate, "seconds_per_image": 1.0 / rate, "inputs_per_s": rate * cost.inputs_per_image,
                "inputs_per_image": cost.inputs_per_image, "input_shape": cost.input_shape,
                "megapixels_per_image": cost.megapixels_per_image,
                "seconds_per_megapixel": 1.0 / (rate * cost.megapixels_per_image),
                "gflops_per_image": cost.flops_per_image / 1e9,
                "achieved_gflops_per_s": cost.flops_per_image * rate / 1e9,
            }
        resize = self._resize_key()
        ratios = {}
        for view, cost in self.costs.items():
            if not view.startswith("crops:") or resize is None:
                continue
            per_round = [(r["images_per_s"][resize] / r["images_per_s"][view]) / cost.inputs_per_image
                         for r in self.rounds if view in r["images_per_s"] and resize in r["images_per_s"]]
            if per_round:
                ratios[view] = {"median": statistics.median(per_round), "range": [min(per_round), max(per_round)],
                                "n_crops": cost.inputs_per_image}
        out["crops_cost_vs_n_resize"] = ratios
        loads = [r["load_average"] for r in self.rounds if r.get("load_average") is not None]
        out["load_average_range"] = [min(loads), max(loads)] if loads else None
        return out

    def _resize_key(self) -> str | None:
        return next((v for v in self.costs if v == "resize"), None)

    def to_dict(self) -> dict:
        return {"model": self.model, "precision": self.precision, "batch_size": self.batch_size,
                "n_images": self.n_images, "decode": self.decode,
                "costs": {k: asdict(v) for k, v in self.costs.items()}, "rounds": self.rounds,
                "summary": self.summary()}


def measure_views(name: str, assessor: Assessor, paths: list[str], views: tuple[str, ...] = DEFAULT_VIEWS, *,
                  batch_size: int, rounds: int, num_workers: int | None = None,
                  log: Callable[[str], None] = lambda _: None) -> ViewsResult:
    """``rounds`` rounds, each scoring all of ``paths`` once through every view (order rotated)."""
    from ..inference.loader import auto_decode_plan

    canonical = [str(parse_view(v)) for v in views]
    costs = {}
    for view in canonical:
        costs[view] = view_cost(assessor, view, paths[0], batch_size=batch_size)
        log(f"[{name}] view {view}: {costs[view].inputs_per_image} input(s) of {costs[view].input_shape[1]}x"
            f"{costs[view].input_shape[2]}, {costs[view].flops_per_image / 1e9:.1f} GFLOPs/image")
    result = ViewsResult(model=name, precision=assessor.precision, batch_size=batch_size, n_images=len(paths),
                         decode=auto_decode_plan(len(paths), batch_size, assessor.device, num_workers).describe(),
                         costs=costs)
    for index in range(rounds):
        order = rotated(tuple(canonical), index)
        entry = {"order": order, "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                 "images_per_s": {}}
        started = time.perf_counter()
        for view in order:
            figure = measure_end_to_end(name, assessor, paths, batch_size=batch_size, num_workers=num_workers,
                                        view=view)
            if figure.n_errors:
                raise RuntimeError(f"view benchmark: {figure.n_errors} of {len(paths)} files failed through {view}")
            entry["images_per_s"][view] = figure.images_per_s
        entry["seconds"] = time.perf_counter() - started
        result.rounds.append(entry)
        log(f"[{name}] views round {index + 1}/{rounds}: " + ", ".join(
            f"{v} {entry['images_per_s'][v]:.3f} img/s" for v in canonical) + f" (load {entry['load_average']})")
    return result
