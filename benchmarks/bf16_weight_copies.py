"""Issue 12: perceptiq's bf16 model-bound rate against a bare open_clip forward, before and after the bf16
weight copies (``backbones/inference_weights.py``), in one process.

Three forwards of the same batch, one call of each per cycle, the order rotating from cycle to cycle:

* ``bare_bf16_weights``: open_clip's image tower of the same architecture with its weights cast to bf16
  once (``benchmark.interleaved.bare_open_clip_forwards``, the faster bare variant);
* ``before_autocast``: the zero-shot model under plain bf16 autocast over its fp32 weights (what
  ``Assessor.predict`` ran before the copies);
* ``after_copies``: ``Assessor.predict`` (bf16 weight copies; since 2026-12-03 also the bf16 residual
  stream of ``backbones/autocast_policy.py``, so "after" now measures both).

Per call: wall time and process CPU time. Run with ``OMP_WAIT_POLICY=PASSIVE`` on a shared machine, so a
torch thread waiting for a descheduled sibling sleeps instead of spinning and CPU time counts work, not
waiting for a core. Prints and writes the medians and the ratios (per-cycle medians too) and the load.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bf16_weight_copies.py --threads 2 --seconds 140 -o ab.json

ViT-B/16 runs with random weights (its speed does not depend on them).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seconds", type=float, default=140.0, help="time for the measured cycles")
    parser.add_argument("-o", "--output", default=None, help="JSON with every call's times")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from perceptiq.benchmark.interleaved import bare_open_clip_forwards, rotated
    from perceptiq.inference import load_model

    assessor = load_model("zero-shot", backbone=args.arch, weights="random", device="cpu", precision="bf16")
    pixels = torch.randn(args.batch, 3, assessor.image_size, assessor.image_size,
                         generator=torch.Generator().manual_seed(0))

    def before(x):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return assessor.module(x)

    bare = bare_open_clip_forwards(args.arch, "bf16", torch.device("cpu"))["bf16_weights"]
    parts = {"bare_bf16_weights": bare, "before_autocast": before, "after_copies": assessor.predict}
    for fn in parts.values():        # first calls (allocator, oneDNN kernel choice, the copies) untimed
        fn(pixels)
        fn(pixels)
    calls: dict[str, list[tuple[float, float]]] = {name: [] for name in parts}
    loads = [os.getloadavg()[0]]
    started, cycles = time.perf_counter(), 0
    while time.perf_counter() - started < args.seconds or cycles == 0:
        for name in rotated(tuple(parts), cycles):
            wall, cpu = time.perf_counter(), time.process_time()
            parts[name](pixels)
            calls[name].append((time.perf_counter() - wall, time.process_time() - cpu))
        cycles += 1
        loads.append(os.getloadavg()[0])
    median = statistics.median
    summary: dict = {"arch": args.arch, "batch": args.batch, "threads": torch.get_num_threads(), "cycles": cycles,
                     "load_range": [min(loads), max(loads)], "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    for name, times in calls.items():
        summary[name] = {"wall_img_s": args.batch / median(t[0] for t in times),
                         "cpu_ms_per_img": 1e3 * median(t[1] for t in times) / args.batch}
    bare_times = calls["bare_bf16_weights"]
    for name in ("before_autocast", "after_copies"):
        summary[f"{name}_vs_bare"] = {
            "wall": summary[name]["wall_img_s"] / summary["bare_bf16_weights"]["wall_img_s"],
            "cpu": summary["bare_bf16_weights"]["cpu_ms_per_img"] / summary[name]["cpu_ms_per_img"],
            "wall_cycle_median": median(b[0] / t[0] for b, t in zip(bare_times, calls[name])),
            "cpu_cycle_median": median(b[1] / t[1] for b, t in zip(bare_times, calls[name])),
        }
    print(json.dumps(summary, indent=1))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"summary": summary, "calls": calls, "loads": loads}, f, indent=1)


if __name__ == "__main__":
    main()
