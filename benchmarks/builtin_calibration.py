"""Where the built-in model's cross-type calibration falls short (issue 11's pooled SRCC), train vs held-out.

Issue 11's pooled SRCC asks one score scale for every distortion type: level 3 of a colour shift should
score like level 3 of a blur. This prints, for photographs of one role (``train``: seen in training,
``heldout``: never seen), the mean score of the pristine photo and of each type at each level 1-5, and the
pooled SRCC of score against -level. Run it on both roles: similar pooled SRCC on both says the gap is in
what the model fits, not in how it generalises; the per-type rows say which types it under-reacts to.

    python benchmarks/builtin_calibration.py --photos photos/train --n 6
    python benchmarks/builtin_calibration.py --photos photos/heldout --n 6 --model runs/x/perceptiq-tiny.safetensors

Photographs are shrunk to a long side of ``--side`` (512, as ``perceptiq reproduce-builtin`` does) and
distorted with ``perceptiq.data.synthetic`` (each level from its own seed); scores use the model's
default view.
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.stats import spearmanr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, required=True, help="folder of photographs")
    parser.add_argument("--n", type=int, default=6, help="photographs drawn from it (seeded)")
    parser.add_argument("--side", type=int, default=512, help="long side after shrinking (0: as stored)")
    parser.add_argument("--model", default="perceptiq-tiny")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import perceptiq
    from perceptiq.data.synthetic.catalogue import list_distortions
    from perceptiq.data.synthetic.colour import from_uint8, to_uint8
    from perceptiq.inference import list_inputs

    photos = list_inputs([args.photos])
    if not photos:
        raise SystemExit(f"no image files in {args.photos}")
    rng = np.random.default_rng(args.seed)
    chosen = [photos[i] for i in sorted(rng.choice(len(photos), min(args.n, len(photos)), replace=False))]
    model = perceptiq.load_model(args.model, device="cpu", precision=args.precision)
    types = list_distortions()
    scores: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
    pooled_scores, pooled_levels = [], []
    for photo in chosen:
        image = Image.open(photo).convert("RGB")
        if args.side:
            image.thumbnail((args.side, args.side), Image.Resampling.LANCZOS)
        pixels = from_uint8(np.asarray(image))
        images, keys = [image], [("pristine", 0)]
        for distortion in types:
            for level in range(1, 6):
                out = distortion(pixels, level, np.random.default_rng([args.seed, level]))
                images.append(Image.fromarray(to_uint8(out)))
                keys.append((distortion.name, level))
        for key, score in zip(keys, model.score(images, batch_size=32).scores):
            scores[key].append(float(score))
            pooled_scores.append(float(score))
            pooled_levels.append(key[1])
    srcc = spearmanr(pooled_scores, -np.asarray(pooled_levels))[0]
    print(f"{args.model} on {len(chosen)} photographs of {args.photos} (long side {args.side or 'as stored'}), "
          f"{len(pooled_scores)} images: pooled SRCC {srcc:.3f}; pristine mean {np.mean(scores['pristine', 0]):.3f}")
    print()
    print("| type | level 1 | 2 | 3 | 4 | 5 |")
    print("|---|---|---|---|---|---|")
    for distortion in types:
        means = " | ".join(f"{np.mean(scores[distortion.name, level]):.2f}" for level in range(1, 6))
        print(f"| {distortion.name} | {means} |")


if __name__ == "__main__":
    main()
