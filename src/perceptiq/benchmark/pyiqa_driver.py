"""Time pyiqa's CLIP-based metrics on a folder of JPEGs; run INSIDE the separate pyiqa virtual environment.

This file is a stand-alone script: ``perceptiq.benchmark.peer`` copies nothing from pyiqa and imports
nothing from it; it runs ``<pyiqa-venv>/bin/python pyiqa_driver.py --images DIR --out result.json`` and
reads the JSON. Only the standard library is imported at module level, so perceptiq's tests can import
``parse_args`` without torch or pyiqa.

Weights: no download. pyiqa builds its CLIP through ``pyiqa.archs.clip_model.load(name_or_path)``, which
accepts a local file; we write a state dict of a randomly initialised OpenAI-layout CLIP (RN50 for
CLIP-IQA, ViT-B/32 for LIQE: the backbones those metrics use) and pass its path. ``load`` first tries
``torch.jit.load`` on the open file and falls back to ``torch.load`` when that raises; but ``jit.load``
reads the file to its end before it fails, and the fallback then finds nothing left to read. So while a
metric is built, ``torch.jit.load`` is wrapped to refuse our weight files at once (before reading),
and the fallback reads the state dict from the start. LIQE insists on the backbone name 'ViT-B/32', so for it
the name is mapped to the file by wrapping the ``load`` that LIQE's module calls. ``TORCH_HOME`` should
point at an empty folder (the caller does this) so LIQE's text-feature cache is computed afresh from the
random weights and nothing is fetched from the network.

FLOPs: counted with perceptiq's own counter (``flops.py`` beside this file, loaded by path: it imports
only torch, which is the same torch here), over one ``metric(x)`` call on one decoded image, with
attention included (fused MHA path off, the CPU attention kernels given formulas).

Timings (median of repeated calls after a warm-up):
* ``model``: ``metric(x)`` on a tensor batch of decoded images already in memory, at the images' own size
  (that is what pyiqa feeds these models: CLIP-IQA runs at native resolution, LIQE cuts 224² patches);
* ``end_to_end``: ``metric(path)`` for every file, pyiqa's documented use on files (decode included).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

# OpenAI CLIP shapes (the published configurations of these two backbones).
CLIP_SHAPES = {
    "RN50": dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
                 vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=512,
                 transformer_heads=8, transformer_layers=12),
    "ViT-B/32": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=32, context_length=77, vocab_size=49408, transformer_width=512,
                     transformer_heads=8, transformer_layers=12),
}
METRIC_BACKBONES = {"clipiqa": "RN50", "liqe": "ViT-B/32"}
# What each metric feeds its network (pyiqa's documented behaviour), and the perceptiq view it compares with.
METRIC_VIEWS = {"clipiqa": ("the whole image at full resolution", "full"),
                "liqe": ("15 patches of 224x224 at native resolution", "crops:15")}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="time pyiqa CLIP-based metrics (random weights)")
    parser.add_argument("--images", required=True, help="folder of images (all the same size)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--metrics", default="clipiqa,liqe", help="comma-separated pyiqa metric names")
    parser.add_argument("--weights-dir", required=True, help="folder for the random CLIP state dicts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1, help="images per model call (model timing)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="minimum timed seconds per figure")
    parser.add_argument("--max-images", type=int, default=0, help="end-to-end: use at most this many files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in args.metrics if m not in METRIC_BACKBONES]
    if unknown:
        parser.error(f"unsupported metric(s) {unknown}; this driver knows {sorted(METRIC_BACKBONES)}")
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if args.min_seconds <= 0:
        parser.error("--min-seconds must be > 0")
    return args


def list_images(folder: str, limit: int = 0) -> list[str]:
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    paths = [os.path.join(folder, n) for n in names]
    return paths[:limit] if limit > 0 else paths


def _median_time(fn, device, min_seconds: float, min_calls: int = 2) -> tuple[float, int, float]:
    """(median seconds per call, number of timed calls, first warm-up call seconds)."""
    import torch

    def sync():
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()

    start = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - start
    times = []
    began = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - began < min_seconds:
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(times), first


def load_flop_counter():
    """perceptiq's ``flops`` module, loaded from the file beside this one (no perceptiq install needed)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flops.py")
    spec = importlib.util.spec_from_file_location("perceptiq_bench_flops", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


def write_random_clip(backbone: str, folder: str, seed: int) -> str:
    """A state dict of a randomly initialised OpenAI-layout CLIP, saved with torch.save; returns its path."""
    import torch
    from pyiqa.archs.clip_model import CLIP

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, backbone.replace("/", "-") + "-random.pth")
    if not os.path.exists(path):
        torch.manual_seed(seed)
        torch.save(CLIP(**CLIP_SHAPES[backbone]).state_dict(), path)
    return path


class _RefuseJitLoad:
    """Context manager: ``torch.jit.load`` raises RuntimeError, without reading, for ``weight_file``."""

    def __init__(self, weight_file: str):
        self.weight_file = os.path.abspath(weight_file)

    def __enter__(self):
        import torch

        self.original = torch.jit.load
        weight_file, original = self.weight_file, self.original

        def jit_load(f, *args, **kwargs):
            name = getattr(f, "name", f)
            if isinstance(name, (str, os.PathLike)) and os.path.abspath(name) == weight_file:
                raise RuntimeError(f"{weight_file} is a state dict, not a TorchScript archive")
            return original(f, *args, **kwargs)

        torch.jit.load = jit_load
        return self

    def __exit__(self, *exc):
        import torch

        torch.jit.load = self.original
        return False


def build_metric(name: str, weight_file: str, device: str):
    """pyiqa metric ``name`` with its CLIP read from ``weight_file`` and no pretrained head weights."""
    with _RefuseJitLoad(weight_file):
        return _build_metric(name, weight_file, device)


def _build_metric(name: str, weight_file: str, device: str):
    import pyiqa

    if name == "clipiqa":
        return pyiqa.create_metric("clipiqa", device=device, backbone=weight_file)
    if name == "liqe":
        import torch
        import pyiqa.archs.liqe_arch as liqe_arch

        # LIQE writes its text-feature cache under torch.hub's folder without creating it.
        os.makedirs(os.path.join(torch.hub.get_dir(), "pyiqa"), exist_ok=True)

        original_load = liqe_arch.load

        def load_named_file(backbone_name, *args, **kwargs):
            return original_load(weight_file if backbone_name == "ViT-B/32" else backbone_name, *args, **kwargs)

        liqe_arch.load = load_named_file
        try:
            return pyiqa.create_metric("liqe", device=device, pretrained=False)
        finally:
            liqe_arch.load = original_load
    raise ValueError(f"unsupported metric {name}")


def run(args: argparse.Namespace) -> dict:
    import torch
    from PIL import Image
    import torchvision.transforms.functional as TF
    import pyiqa

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    paths = list_images(args.images, args.max_images)
    if not paths:
        raise SystemExit(f"no images in {args.images}")
    with Image.open(paths[0]) as first:
        width, height = first.size
    batch = torch.stack([TF.to_tensor(Image.open(p).convert("RGB")) for p in (paths * args.batch_size)[:args.batch_size]])
    result = {"pyiqa_version": getattr(pyiqa, "__version__", "unknown"), "torch_version": torch.__version__,
              "device": args.device, "threads": torch.get_num_threads(), "n_images": len(paths),
              "image_size": [width, height], "batch_size": args.batch_size, "metrics": {}}
    for name in args.metrics:
        metric = build_metric(name, write_random_clip(METRIC_BACKBONES[name], args.weights_dir, args.seed),
                              args.device)
        x = batch.to(args.device)
        print(f"pyiqa {name}: timing the model on {tuple(x.shape)}", file=sys.stderr, flush=True)
        with torch.inference_mode():
            model_s, model_calls, first_s = _median_time(lambda: metric(x), args.device, args.min_seconds)

            def score_all_files():
                for path in paths:
                    metric(path)

            print(f"pyiqa {name}: end to end over {len(paths)} files", file=sys.stderr, flush=True)
            start = time.perf_counter()
            score_all_files()
            if str(args.device).startswith("cuda"):
                torch.cuda.synchronize()
            e2e_s = time.perf_counter() - start
            try:
                flops_per_image = load_flop_counter().count_flops(metric, x[:1]).total
            except Exception as err:  # the timing stands without the count
                print(f"pyiqa {name}: FLOP count failed ({type(err).__name__}: {err})", file=sys.stderr)
                flops_per_image = None
        result["metrics"][name] = {
            "backbone": METRIC_BACKBONES[name], "weights": "random (state dict, no download)",
            "input": METRIC_VIEWS[name][0], "compare_with_view": METRIC_VIEWS[name][1],
            "flops_per_image": flops_per_image,
            "model_images_per_s": args.batch_size / model_s, "model_seconds_per_call": model_s,
            "model_calls": model_calls, "first_call_s": first_s,
            "end_to_end_images_per_s": len(paths) / e2e_s, "end_to_end_seconds": e2e_s,
        }
        metric = None  # free the model before building the next one
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
