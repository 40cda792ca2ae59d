"""Do native-resolution views see mild distortions that the resize view misses? (issue 12, the proof table)

Full-size photographs are distorted with mild levels (1 and 2 of 5) of ``perceptiq.data.synthetic``
at their stored resolution; a trained model scores every image under each view; the distortion-level
protocol (``perceptiq.evaluation.level_ranking``) says, per distortion type, how well the scores order
level 0 (the photo) > 1 > 2 within each photo (median over photos of the within-photo SRCC of the score
against -level), plus the pooled SRCC. The cost of each view (seconds per image on this machine) is
printed too. Prints Markdown tables; ``--json`` writes every number.

    python benchmarks/view_level_ranking.py                          # built-in model, example photos
    python benchmarks/view_level_ranking.py --photos /data/photos --max-photos 12 --model runs/x/model.safetensors
    python benchmarks/view_level_ranking.py --views resize,crops:10,crops:10,random,full

Photographs: ``--photos DIR`` (repeatable; every image file under it), else the repository's
``examples/images`` originals plus scikit-image's sample photographs (``perceptiq[train]``). Works with
any model ``perceptiq.load_model`` takes, so it can be re-run on a rebuilt built-in model.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# Mild distortions of fine detail (blur, noise, compression, sharpening, spatial) that a 224 downscale
# of a large photo tends to hide, plus three global ones (tone, contrast, colour) it should not.
DEFAULT_TYPES = ("gaussian_blur", "lens_blur", "motion_blur", "white_noise", "white_noise_color_component",
                 "impulse_noise", "multiplicative_noise", "denoise", "jpeg", "jpeg2000", "pixelate",
                 "high_sharpen", "jitter", "darken", "contrast_change", "color_saturation_down")
# "full,max=4194304": native for photos up to 2048 x 2048 (the default full view caps at 1 MP).
DEFAULT_VIEWS = ("resize", "crops:10", "full,max=4194304")
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_kind() -> str:
    """The project's CPU kinds: AMX-BF16, AVX512-BF16, AVX2 (docs/benchmarks.md)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    if "amx_bf16" in flags:
        return "AMX-BF16"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return "AVX2" if "avx2" in flags else "other"


def gather_photos(folders: list[Path], limit: int | None, work: Path) -> Path:
    """Copy (or write) the photographs into ``work/sources`` and return that folder."""
    sources = work / "sources"
    sources.mkdir(parents=True)
    chosen: list[tuple[str, Path | np.ndarray]] = []
    if folders:
        from perceptiq.inference.files import iter_image_files

        chosen = [(p.stem, p) for p in iter_image_files(folders)]
    else:
        for path in sorted((REPO / "examples" / "images").glob("*.jpg")):
            if "_" not in path.stem:          # the originals, not the shipped distorted copies
                chosen.append((path.stem, path))
        try:
            import skimage.data

            for name in SKIMAGE_PHOTOS:
                if any(stem == name for stem, _ in chosen):
                    continue
                pixels = (skimage.data.stereo_motorcycle()[0] if name == "motorcycle_left"
                          else getattr(skimage.data, name)())
                chosen.append((f"skimage_{name}", pixels))
        except ImportError:
            print("scikit-image not installed: only examples/images are used", file=sys.stderr)
    if limit:
        chosen = chosen[:limit]
    for stem, source in chosen:
        if isinstance(source, Path):
            shutil.copy(source, sources / f"{stem}{source.suffix.lower()}")
        else:
            Image.fromarray(np.asarray(source, dtype=np.uint8)).convert("RGB").save(sources / f"{stem}.png")
    return sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="perceptiq-tiny", help="model name or checkpoint (default perceptiq-tiny)")
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--photos", type=Path, action="append", default=[], help="folder of photographs (repeatable)")
    parser.add_argument("--max-photos", type=int, default=None, help="use at most N photographs")
    parser.add_argument("--types", default=",".join(DEFAULT_TYPES), help="comma-separated distortion types")
    parser.add_argument("--levels", default="1,2", help="distortion levels (default: the mild 1,2)")
    parser.add_argument("--views", default=";".join(DEFAULT_VIEWS),
                        help="views separated by ';' (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write every number to this file")
    parser.add_argument("--keep", type=Path, default=None, help="keep the distorted images in this folder")
    args = parser.parse_args(argv)

    import torch

    from perceptiq.data.synthetic import synthesize
    from perceptiq.evaluation.level_ranking import (evaluate_level_ranking, render_per_type_table,
                                                    render_summary_table, rows_from_synthetic)
    from perceptiq.inference import load_model, parse_view

    views = [str(parse_view(v)) for v in args.views.split(";") if v.strip()]
    levels = tuple(int(v) for v in args.levels.split(","))
    work = Path(tempfile.mkdtemp(prefix="view-levels-")) if args.keep is None else args.keep
    started = time.perf_counter()
    sources = gather_photos(args.photos, args.max_photos, work)
    labels = synthesize(sources, work / "distorted", types=args.types.split(","), levels=levels, seed=args.seed,
                        max_side=None, image_format="png")
    rows = rows_from_synthetic(labels)
    sizes = [Image.open(row.path).size for row in rows if row.level == 0]
    synth_s = time.perf_counter() - started
    print(f"{len(sizes)} photographs ({min(w * h for w, h in sizes) / 1e6:.2f}-{max(w * h for w, h in sizes) / 1e6:.2f} "
          f"MP), {len(rows)} images (levels 0 and {','.join(map(str, levels))}), distorted in {synth_s:.0f} s",
          file=sys.stderr)

    assessor = load_model(args.model, backbone=args.backbone, weights=args.weights, device="cpu",
                          precision=args.precision)
    info = assessor.describe()
    results, costs = [], {}
    for view in views:
        t0 = time.perf_counter()
        scored = assessor.score([row.path for row in rows], view=view, batch_size=args.batch_size)
        seconds = time.perf_counter() - t0
        costs[view] = seconds / len(rows)
        results.append(evaluate_level_ranking(rows, scored.scores, higher_is_better=info["higher_is_better"],
                                              scorer=view, win_levels=levels))
        print(f"view {view}: {seconds:.0f} s ({costs[view]:.3f} s/image)", file=sys.stderr)

    header = (f"Model {info['model']} ({info['backbone']}, weights {info['weights']}, {args.precision}); "
              f"{len(sizes)} photographs at stored size, levels 0/{'/'.join(map(str, levels))} of "
              f"{len(args.types.split(','))} types; CPU: {cpu_name()} ({cpu_kind()}), {torch.get_num_threads()} "
              f"torch threads; {time.strftime('%Y-%m-%d')}")
    print(header + "\n")
    print("Median over photographs of the within-photo SRCC of the score against -level (levels 0, "
          + ", ".join(map(str, levels)) + "), per distortion type:\n")
    print(render_per_type_table(results))
    print("\nSummary (pristine win rate over levels " + ",".join(map(str, levels)) + "):\n")
    print(render_summary_table(results))
    print("\n| view | seconds per image (scoring, this machine) | relative to resize |\n| --- | --- | --- |")
    for view in views:
        print(f"| {view} | {costs[view]:.3f} | {costs[view] / costs[views[0]]:.1f}x |")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "header": header, "views": views, "seconds_per_image": costs,
            "results": {r.scorer: {"summary": r.summary(),
                                   "median_srcc": {t: r.per_type[t].median_srcc for t in r.types},
                                   "srcc_by_photo": {t: r.per_type[t].srcc_by_ref for t in r.types}}
                        for r in results},
        }, indent=2))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
