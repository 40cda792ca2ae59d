"""GRMP-IQA's few-shot schedule at ViT-B/16 scale, on a CPU (issue 13, finding 6).

Runs the first epochs of the `grmp-fewshot` recipe's schedule exactly as the recipe sets it (SGD lr 0.002,
momentum 0.9, weight decay 5e-4, one warm-up epoch at 1e-5, then cosine over the remaining 49 of 50
epochs; prompts + last four blocks of both towers trained; QGR with lambda 5; BCE), on a ViT-B/16 CLIP
with *random* weights (no pretrained weights can be fetched here) and images made by
`perceptiq synthesize` from the example photos. Only the batch size is small (CPU), and the run stops
after ``--epochs`` of the 50 (the rate is at its peak, 0.002 -> 0.00198, during these epochs, so
divergence, if the schedule diverges, shows here first).

Prints per step: lr, BCE loss, |G_qua|, |G_sem|, the QGR angle, whether it projected; per epoch: the
relative change of the tuned block weights and of the prompts; then a verdict (diverged: a non-finite
loss, or the last epoch's mean loss above 1.5x the first peak-rate epoch's) and the CPU kind.

    OMP_NUM_THREADS=2 python benchmarks/grmp_fewshot_schedule_vitb16.py --threads 2 --batch 4 --shots 16 --epochs 6
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PRISTINE = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]


def cpu_kind() -> str:
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", "unknown CPU", "x86_64"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    isa = "AMX-BF16" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else \
        "AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "other"
    return f"{name} ({isa})"


def make_data(folder: Path, types: str, levels: str) -> Path:
    source = folder / "pristine"
    source.mkdir(parents=True)
    for name in PRISTINE:
        shutil.copy(ROOT / "examples" / "images" / name, source / name)
    out = folder / "synthetic"
    subprocess.run([sys.executable, "-m", "perceptiq", "synthesize", str(source), "-o", str(out),
                    "--types", types, "--levels", levels, "--max-side", "256", "--no-progress"], check=True)
    return out / "labels.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--shots", type=int, default=16, help="training images (the paper: 50/100/200)")
    parser.add_argument("--epochs", type=int, default=6, help="first N of the recipe's 50 epochs")
    parser.add_argument("--visual-tokens", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--lr", type=float, default=None, help="default: the recipe's 0.002")
    parser.add_argument("--backbone", default="ViT-B-16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the per-step log here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from perceptiq.data import load_generic_csv
    from perceptiq.models import build_model
    from perceptiq.recipes import load_recipe
    from perceptiq.training import TrainConfig, Trainer, TrainItem

    recipe = load_recipe("grmp-fewshot")
    options = dict(recipe["model"]["options"])
    if args.visual_tokens is not None:
        options["n_visual_tokens"] = args.visual_tokens
    with tempfile.TemporaryDirectory() as tmp:
        labels = make_data(Path(tmp), "gaussian_blur,jpeg,white_noise,brighten", "1,3,5")
        dataset = load_generic_csv(labels)
        rng = np.random.default_rng(args.seed)
        chosen = rng.choice(len(dataset.samples), size=min(args.shots, len(dataset.samples)), replace=False)
        items = [TrainItem(str(dataset.samples[i].path), float(dataset.samples[i].score), "synthetic")
                 for i in chosen]
        model = build_model("grmp-iqa", backbone=args.backbone, weights="random", **options).module
        model.set_trainable(recipe["model"]["trainable"])
        tuned = {n: p for n, p in model.named_parameters() if p.requires_grad}
        start = {n: p.detach().clone() for n, p in tuned.items()}
        train = dict(recipe["train"])
        epochs_total = train["epochs"]
        train.update(batch_size=args.batch, epochs=args.epochs, workers=0, precision="fp32",
                     decay_epochs=epochs_total - train.get("warmup_epochs", 0), eval_every=10 ** 6, seed=args.seed)
        if args.lr is not None:
            train["lr"] = args.lr
        config = TrainConfig.from_dict(train)
        drift: list[dict] = []

        def on_epoch(record) -> None:
            blocks = [n for n in tuned if "resblocks" in n]
            prompts = [n for n in tuned if "resblocks" not in n]

            def relative(names):
                num = sum(float((tuned[n].detach() - start[n]).double().pow(2).sum()) for n in names)
                den = sum(float(start[n].double().pow(2).sum()) for n in names)
                return math.sqrt(num / den) if den else float("nan")

            drift.append({"epoch": record.epoch, "lr": record.lr, "loss": record.train_loss,
                          "blocks_rel_change": relative(blocks), "prompts_rel_change": relative(prompts),
                          "seconds": record.seconds})
            print(f"epoch {record.epoch}: lr {record.lr:.3e} mean loss {record.train_loss:.4f} "
                  f"({record.seconds:.0f} s)", flush=True)

        began, cpu_began = time.perf_counter(), time.process_time()
        result = Trainer(config).fit(model, items, on_epoch=on_epoch)
        seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu_began

    n_tuned = sum(p.numel() for p in tuned.values())
    print(f"# {args.backbone}, random weights, n_visual_tokens {options['n_visual_tokens']}, "
          f"{n_tuned / 1e6:.1f}M tuned parameters ({recipe['model']['trainable']}); {len(items)} images, "
          f"batch {args.batch}, first {args.epochs} of {epochs_total} epochs; {cpu_kind()}, "
          f"{args.threads} thread(s); {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU "
          f"({cpu_seconds / max(len(result.steps), 1):.1f} s CPU/step; load average {os.getloadavg()[0]:.1f})")
    print("step epoch lr        loss    |G_qua|   |G_sem|   angle  projected")
    for step in result.steps:
        lr = config.lr_at(step["epoch"])
        print(f"{step['step']:4d} {step['epoch'] + 1:5d} {lr:.3e} {step['loss']:.4f} {step['norm_qua']:9.4g} "
              f"{step['norm_sem']:9.4g} {step['angle_deg']:6.1f}  {step['projected']}")
    print("epoch lr        mean loss  blocks |dW|/|W|  prompts |dP|/|P|  s/epoch")
    for row in drift:
        print(f"{row['epoch']:5d} {row['lr']:.3e} {row['loss']:.4f}     {row['blocks_rel_change']:.3e}      "
              f"{row['prompts_rel_change']:.3e}        {row['seconds']:.0f}")
    losses = [s["loss"] for s in result.steps]
    peak_epochs = [r for r in drift if r["epoch"] > config.warmup_epochs]
    diverged = not all(math.isfinite(x) for x in losses) or (
        len(peak_epochs) >= 2 and peak_epochs[-1]["loss"] > 1.5 * peak_epochs[0]["loss"])
    print(f"verdict: {'DIVERGED' if diverged else 'no divergence'} (loss first/last step {losses[0]:.4f} / "
          f"{losses[-1]:.4f}; max |G_qua| {max(s['norm_qua'] for s in result.steps):.4g})")
    if args.json is not None:
        args.json.write_text(json.dumps({"steps": result.steps, "epochs": drift, "cpu": cpu_kind(),
                                         "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))


if __name__ == "__main__":
    main()
