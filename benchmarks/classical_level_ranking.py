"""The distortion-level protocol (issue 11) for the classical baselines on scikit-image photographs.

NIQE is fitted on some of scikit-image's offline sample photographs; the others are distorted with all
25 types x 5 levels of ``perceptiq.data.synthetic`` (max side 512) and every scorer is judged on them
by ``perceptiq.evaluation.level_ranking``. Prints the summary table and the per-type table.

    python benchmarks/classical_level_ranking.py                       # NIQE and variance of the Laplacian
    python benchmarks/classical_level_ranking.py --with-model perceptiq-tiny --json out.json

This is a figure for the record, not the acceptance command of issue 11 (which needs >= 20 held-out
photographs from another source than the training images). Needs scikit-image (``perceptiq[train]``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from perceptiq.classical import LaplacianVariance, NIQEModel
from perceptiq.data.synthetic import synthesize
from perceptiq.data.synthetic.colour import to_uint8
from perceptiq.data.synthetic.sources import load_pristine
from perceptiq.evaluation.level_ranking import (
    ISSUE11_BARS,
    evaluate_level_ranking,
    render_per_type_table,
    render_summary_table,
    rows_from_synthetic,
)

# scikit-image sample images that are photographs (or photo-like scans) and ship with the package.
FIT_PHOTOS = ("motorcycle_left", "motorcycle_right", "brick", "grass", "gravel", "coins", "moon",
              "immunohistochemistry")
HELD_OUT_PHOTOS = ("coffee", "rocket", "camera", "chelsea", "astronaut")   # `cat` is chelsea: never fit on it


def sample_photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a scikit-image sample image at its stored size."""
    import skimage.data

    pixels = (skimage.data.stereo_motorcycle()[0 if name == "motorcycle_left" else 1]
              if name.startswith("motorcycle_") else getattr(skimage.data, name)())
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="folder for photos and distortions (default: temporary)")
    parser.add_argument("--fit", nargs="+", default=list(FIT_PHOTOS), help="sample images NIQE is fitted on")
    parser.add_argument("--held-out", nargs="+", default=list(HELD_OUT_PHOTOS), help="sample images distorted and scored")
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--with-model", action="append", default=[], metavar="NAME",
                        help="also score with a registered perceptiq model (e.g. perceptiq-tiny)")
    parser.add_argument("--json", type=Path, default=None, help="write the summary numbers here")
    args = parser.parse_args(argv)
    overlap = set(args.fit) & set(args.held_out)
    if overlap:
        parser.error(f"photos both fitted on and held out: {sorted(overlap)}")

    work = args.work or Path(tempfile.mkdtemp(prefix="level-ranking-"))
    photos, fit_dir = work / "held_out_photos", work / "fit_photos"
    for folder, names in ((photos, args.held_out), (fit_dir, args.fit)):
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.fromarray(sample_photo(name)).save(folder / f"{name}.png")

    started = time.perf_counter()
    csv_path = synthesize(photos, work / "synthetic", seed=args.seed, max_side=args.max_side, overwrite=True)
    synth_s = time.perf_counter() - started
    rows = rows_from_synthetic(csv_path)
    paths = [row.path for row in rows]

    # the fitting photos get the same shrink as the held-out references (longer side <= max_side, Lanczos)
    started = time.perf_counter()
    fit_images = [to_uint8(load_pristine(fit_dir / f"{name}.png", args.max_side)) for name in args.fit]
    niqe = NIQEModel.fit(fit_images)
    fit_s = time.perf_counter() - started

    scorers, timings = {}, {}
    for measure in (niqe, LaplacianVariance()):
        started = time.perf_counter()
        scored = measure.score_many(paths)
        timings[measure.name] = time.perf_counter() - started
        scorers[measure.name] = (scored.scores, measure.higher_is_better)
        for source, error in scored.failures()[:5]:
            print(f"{measure.name}: no score for {source}: {error}", file=sys.stderr)
    for name in args.with_model:
        import perceptiq

        model = perceptiq.load_model(name)
        started = time.perf_counter()
        scores = np.asarray(model.score(paths), dtype=np.float64)
        timings[name] = time.perf_counter() - started
        scorers[name] = (scores, bool(model.describe().get("higher_is_better", True)))

    results = [evaluate_level_ranking(rows, scores, higher_is_better=direction, scorer=name)
               for name, (scores, direction) in scorers.items()]
    print(f"# Distortion-level protocol: {len(args.held_out)} held-out scikit-image photos "
          f"({', '.join(args.held_out)}), all 25 types x 5 levels, max side {args.max_side}, seed {args.seed}")
    print(f"NIQE fitted on {', '.join(args.fit)}: {niqe.fit_info['n_images']} images, "
          f"{niqe.fit_info['n_patches_selected']} of {niqe.fit_info['n_patches']} patches selected (sharpness > 0.75 max)")
    print(f"CPU: {cpu_name()}; synthesize {synth_s:.0f} s, NIQE fit {fit_s:.1f} s, scoring "
          + ", ".join(f"{name} {seconds:.0f} s ({len(paths) / seconds:.1f} img/s)" for name, seconds in timings.items()))
    print()
    print(render_summary_table(results, bars=ISSUE11_BARS))
    print()
    print(render_per_type_table(results))
    for result in results:
        for note in result.notes:
            print(f"note ({result.scorer}): {note}")
    if args.json is not None:
        args.json.write_text(json.dumps({r.scorer: r.summary() for r in results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
