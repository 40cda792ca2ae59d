"""End-to-end speed of the built-in model against the ViT-B/16 zero-shot model, on the same JPEGs, same process.

Issue 11 asks the built-in model to score at least 5x as many images per second as the ViT-B/16 zero-shot
model, end to end (decode + view + model), on the same CPU. Both models score the same JPEG files with
their default views through ``perceptiq.load_model(...).score``; the runs are interleaved and repeated
and the median of each is reported, so a machine shared with other work moves both alike.

    python benchmarks/builtin_speed.py                          # 48 JPEGs 1024x768, 3 rounds
    python benchmarks/builtin_speed.py --photos DIR --n 64      # your own photos (resized to 1024x768)

ViT-B/16 runs with random weights (no download here; its speed does not depend on them).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_jpegs(folder: Path, n: int, photos: Path | None, size=(1024, 768)) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if photos else []
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        if sources:
            img = Image.open(sources[i % len(sources)]).convert("RGB").resize(size, Image.Resampling.BICUBIC)
        else:
            y, x = np.mgrid[0:size[1], 0:size[0]]
            base = 0.5 + 0.25 * np.sin(x / (9 + i % 7)) * np.cos(y / 13)
            pixels = np.clip(base[..., None] + 0.08 * rng.standard_normal((size[1], size[0], 3)), 0, 1)
            img = Image.fromarray((pixels * 255).astype(np.uint8))
        path = folder / f"img{i:03d}.jpg"
        img.save(path, quality=90)
        paths.append(str(path))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=48, help="JPEGs per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photos", type=Path, default=None)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--builtin", default="perceptiq-tiny")
    args = parser.parse_args(argv)
    import perceptiq

    folder = Path(tempfile.mkdtemp(prefix="builtin-speed-"))
    paths = make_jpegs(folder, args.n, args.photos)
    models = {
        args.builtin: perceptiq.load_model(args.builtin, device="cpu", precision=args.precision),
        "zero-shot ViT-B-16": perceptiq.load_model("zero-shot", backbone="ViT-B-16", weights="random",
                                                   device="cpu", precision=args.precision),
    }
    for model in models.values():       # warm-up: text features, allocator, decode pool
        model.score(paths[:4])
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            model.score(paths)
            rates[name].append(len(paths) / (time.perf_counter() - start))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "unknown CPU"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    kind = "AMX-BF16" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "AVX2"
    print(f"# {args.n} JPEGs 1024x768, {args.rounds} interleaved rounds, precision {args.precision}; CPU {cpu} ({kind}), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print("| model | view | images/s (median) | runs |")
    print("|---|---|---|---|")
    for name, model in models.items():
        view = model.describe().get("view", "?")
        print(f"| {name} | {view} | {statistics.median(rates[name]):.2f} | "
              f"{', '.join(f'{r:.2f}' for r in rates[name])} |")
    names = list(models)
    print(f"\nratio {names[0]} / {names[1]}: {statistics.median(rates[names[0]]) / statistics.median(rates[names[1]]):.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
