"""``run_benchmark``: every figure of ``perceptiq bench`` in one run, as one JSON-ready dict.

Order of work (each part's figures reference the others only through the result dict):
machine facts -> matmul rate per dtype (the MFU denominator) -> per model: FLOP count, model-bound and
end-to-end throughput per precision / compile / batch size -> training throughput -> the pyiqa peer
on the same JPEGs -> targets checked against the measured figures.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from ..inference import Assessor, cpu_supports_bf16, resolve_device
from ..models import build_model
from .flops import backbone_tower_macs, forward_flops
from .interleaved import measure_interleaved
from .views import DEFAULT_VIEWS, measure_views
from .matmul import measure_matmul_rate
from .targets import check_targets
from .throughput import measure_end_to_end, measure_model
from .training import TRAINING_KINDS, measure_gamma_mixed, measure_grmp_meta, measure_grmp_qgr, model_options
from .workload import mean_file_bytes, write_jpegs

BENCH_MODELS = ("zero-shot", "gamma", "grmp-iqa")
SCHEMA = "perceptiq-bench/1"
FLOP_CONVENTION = ("FLOPs = 2 x multiply-accumulates (MACs). The papers quote MACs: ViT-B/16 at 224x224 is "
                   "17.56 GMACs = 35.1 GFLOPs per image. MFU = achieved FLOP/s / dense square-matmul FLOP/s "
                   "measured on the same device, in the same dtype, in the same run.")


@dataclass
class BenchConfig:
    """What to run. ``None`` fields take the mode's default (``resolved`` fills them in)."""

    quick: bool = False
    device: str = "auto"
    arch: str = "ViT-B-16"
    weights: str = "random"
    models: tuple[str, ...] = BENCH_MODELS
    batch_sizes: tuple[int, ...] | None = None
    precisions: tuple[str, ...] | None = None     # None: fp32, plus bf16 where the device does it natively
    compile: bool | None = None
    peer: bool = True
    training: tuple[str, ...] = TRAINING_KINDS
    n_images: int | None = None                   # JPEGs for the end-to-end figures
    image_width: int = 1024
    image_height: int = 768
    decode_workers: int | None = None             # None: the scorer's automatic choice
    threads: int | None = None                    # torch intra-op threads (None: torch's default)
    min_seconds: float | None = None              # per model-bound figure
    train_batch_size: int | None = None
    train_steps: int | None = None
    meta_tasks: int | None = None
    peer_images: int | None = None
    interleaved_rounds: int | None = None         # same-process ratio rounds (0: none)
    views: tuple[str, ...] = DEFAULT_VIEWS        # zero-shot through each view, same files as the peer ('': none)
    view_rounds: int | None = None
    interleaved_batch: int | None = None
    matmul_sizes: tuple[int, ...] | None = None
    seed: int = 0
    command: str = ""

    def resolved(self, device: torch.device) -> "BenchConfig":
        quick, gpu = self.quick, device.type == "cuda"

        def pick(value, quick_value, full_value, gpu_value=None):
            if value is not None:
                return value
            if quick:
                return quick_value
            return gpu_value if gpu and gpu_value is not None else full_value

        values = asdict(self)
        values.update(
            batch_sizes=tuple(pick(self.batch_sizes, (8,), (1, 8, 32), (1, 8, 32, 128))),
            compile=pick(self.compile, False, True),
            n_images=pick(self.n_images, 24, 96, 1024),   # >= 3 batches: a steady state after the first
            min_seconds=pick(self.min_seconds, 1.0, 4.0, 2.0),
            train_batch_size=pick(self.train_batch_size, 2, 8, 32),
            train_steps=pick(self.train_steps, 1, 2, 10),
            meta_tasks=pick(self.meta_tasks, 2, 2, 5),
            peer_images=pick(self.peer_images, 4, 8, 256),
            interleaved_rounds=pick(self.interleaved_rounds, 3, 5, 3),
            view_rounds=pick(self.view_rounds, 2, 3, 3),
            # the scorer's default batch (32) in a full run; quick keeps its one batch size
            interleaved_batch=pick(self.interleaved_batch, 8, 32, 128),
            matmul_sizes=tuple(pick(self.matmul_sizes, (1024, 2048), (1024, 2048, 3072), (4096, 8192))),
        )
        if self.precisions is None:
            native_bf16 = torch.cuda.is_bf16_supported() if gpu else cpu_supports_bf16()
            values["precisions"] = ("fp32", "bf16") if native_bf16 else ("fp32",)
        values["models"] = tuple(self.models)
        values["views"] = tuple(self.views)
        values["training"] = tuple(self.training)
        return BenchConfig(**values)


def machine_facts(device: torch.device) -> dict:
    """What the figures were measured on (stated with every result)."""
    facts = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
        "device": str(device), "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": cpu_supports_bf16(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import open_clip

        facts["open_clip"] = open_clip.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(gpu=props.name, gpu_memory_bytes=props.total_memory, cuda=torch.version.cuda,
                     gpu_bf16=torch.cuda.is_bf16_supported())
    return facts


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class _Progress:
    log: Callable[[str], None]
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.log("note: " + text)


def run_benchmark(config: BenchConfig, *, log: Callable[[str], None] = print) -> dict:
    """Run everything ``config`` asks for; returns the result dict that ``perceptiq bench`` writes."""
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    config = config.resolved(device)
    started = time.perf_counter()
    progress = _Progress(lambda text: log(f"[{time.perf_counter() - started:6.1f}s] {text}"))
    unknown = [m for m in config.models if m not in BENCH_MODELS]
    if unknown:
        raise ValueError(f"unknown benchmark model(s) {unknown}: choose from {', '.join(BENCH_MODELS)}")
    bad_training = [k for k in config.training if k not in TRAINING_KINDS]
    if bad_training:
        raise ValueError(f"unknown training benchmark(s) {bad_training}: choose from {', '.join(TRAINING_KINDS)}")
    for precision in config.precisions:
        if precision not in _DTYPES:
            raise ValueError(f"unknown precision '{precision}': choose fp32 or bf16")
    if device.type == "cpu" and "bf16" in config.precisions and not cpu_supports_bf16():
        progress.note("bf16 was asked for on a CPU without native bf16 (no AVX512-BF16/AMX): autocast runs "
                      "bf16 matmuls in a slow emulated path; expect it far slower than fp32")
    elif config.precisions == ("fp32",) and device.type == "cpu":
        progress.note("bf16 skipped: this CPU has no native bf16 (torch.ops.mkldnn._is_mkldnn_bf16_supported() "
                      "is False); pass --precisions fp32,bf16 to measure it anyway")

    result: dict = {"schema": SCHEMA, "convention": FLOP_CONVENTION, "machine": machine_facts(device),
                    "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}}
    log(f"perceptiq bench on {device} ({result['machine']['cpu_model']}, {torch.get_num_threads()} threads)")

    result["matmul"] = {}
    _measure_matmul(config, device, result, log)

    with tempfile.TemporaryDirectory(prefix="perceptiq-bench-") as scratch:
        folder = os.path.join(scratch, "jpegs")
        paths = write_jpegs(folder, config.n_images, width=config.image_width, height=config.image_height,
                            seed=config.seed)
        result["workload"] = {"n_images": len(paths), "width": config.image_width, "height": config.image_height,
                              "mean_file_bytes": mean_file_bytes(paths), "format": "JPEG quality 90"}
        result["flops"], result["inference"], result["interleaved"], result["views"] = {}, [], [], []
        for name in config.models:
            _bench_model(name, config, device, paths, result, progress)
            _measure_matmul(config, device, result, log)
        result["training"] = _bench_training(config, device, paths, result, progress)
        _measure_matmul(config, device, result, log)
        result["peer"] = _bench_peer(config, device, folder, progress)
    _fill_mfu(result)
    result["targets"] = check_targets(result)
    result["notes"] = progress.notes
    return result


def _measure_matmul(config: BenchConfig, device: torch.device, result: dict, log) -> None:
    """(Re)measure the matmul rate per precision; the MFU denominator is the best rate of the run.

    Measured at the start, after each model and after training: on a machine shared with other work the
    rate moves with the load, and the highest one is the conservative denominator (MFU is not flattered
    by a rate that happened to be taken while another process held the cores).
    """
    for precision in config.precisions:
        rate = measure_matmul_rate(device, _DTYPES[precision], config.matmul_sizes,
                                   min_seconds=min(max(config.min_seconds, 0.1), 1.0))
        entry = result["matmul"].setdefault(precision, {**rate.to_dict(), "samples": []})
        entry["samples"].append(rate.flops_per_s)
        if rate.flops_per_s >= entry["flops_per_s"]:
            entry.update(flops_per_s=rate.flops_per_s, best_size=rate.best_size, by_size=rate.by_size)
        log(f"matmul {precision}: {rate.flops_per_s / 1e9:.1f} GFLOP/s now (n={rate.best_size}), "
            f"best so far {entry['flops_per_s'] / 1e9:.1f}")


def _mfu(flops_per_s: float | None, result: dict, precision: str) -> float | None:
    rate = result["matmul"].get(precision)
    return flops_per_s / rate["flops_per_s"] if rate and flops_per_s is not None else None


def _fill_mfu(result: dict) -> None:
    """MFU of every figure against the run's final (best) matmul rate in the figure's dtype."""
    for row in result["inference"] + result["training"]:
        row["mfu"] = _mfu(row["achieved_flops_per_s"], result, row["precision"])


def _bench_model(name: str, config: BenchConfig, device: torch.device, paths: list[str], result: dict,
                 progress: _Progress) -> None:
    log = progress.log
    log(f"[{name}] building on {config.arch} ({config.weights} weights)")
    bundle = build_model(name, backbone=config.arch, weights=config.weights, device=device,
                         **model_options(name, config.arch))
    module = bundle.module.eval()
    image_size = bundle.backbone.image_size
    counted = forward_flops(module, image_size, device=device)
    extra_tokens = getattr(getattr(module, "visual_prompts", None), "n_tokens", 0)
    result["flops"][name] = {
        "per_image": counted.per_image, "per_batch": counted.per_batch,
        "per_image_gmacs": counted.per_image / 2e9,
        "image_tower_analytic_macs": backbone_tower_macs(module.backbone, extra_tokens=extra_tokens),
        "by_op_one_image": counted.by_op_one_image,
    }
    log(f"[{name}] {counted.per_image / 1e9:.2f} GFLOPs per image (+{counted.per_batch / 1e9:.2f} per call)")
    for precision in config.precisions:
        for compiled in ((False, True) if config.compile else (False,)):
            for batch_size in config.batch_sizes:
                try:
                    figure = measure_model(name, module, batch_size=batch_size, image_size=image_size,
                                           device=device, precision=precision, compiled=compiled,
                                           min_seconds=config.min_seconds, seed=config.seed)
                except Exception as err:  # compile can fail on a machine without a working toolchain
                    if not compiled:
                        raise
                    progress.note(f"{name}: torch.compile failed at batch {batch_size} "
                                  f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); compiled figures skipped")
                    break
                _fill_flops(figure, counted.at_batch(batch_size) / batch_size, result)
                result["inference"].append(figure.to_dict())
                log(_describe(figure))
        if config.compile:
            torch._dynamo.reset()
        assessor = Assessor(bundle, device=device, precision=precision)
        for batch_size in config.batch_sizes:
            figure = measure_end_to_end(name, assessor, paths, batch_size=batch_size,
                                        num_workers=config.decode_workers)
            _fill_flops(figure, counted.at_batch(batch_size) / batch_size, result)
            result["inference"].append(figure.to_dict())
            log(_describe(figure))
        if name == "zero-shot" and config.interleaved_rounds:
            _bench_interleaved(name, assessor, config, paths, result, progress)
        # every view in the operating precision (the last: bf16 where native); a full run adds the others
        if name == "zero-shot" and config.views and (precision == config.precisions[-1] or not config.quick):
            _bench_views(name, assessor, config, paths, result, progress)
    del bundle, module


def _bench_views(name: str, assessor: Assessor, config: BenchConfig, paths: list[str], result: dict,
                 progress: _Progress) -> None:
    """Each view end to end on the files the peer reads (the first ``peer_images``), interleaved rounds."""
    figure = measure_views(name, assessor, paths[:config.peer_images], config.views,
                           batch_size=config.interleaved_batch, rounds=config.view_rounds,
                           num_workers=config.decode_workers, log=progress.log)
    result["views"].append(figure.to_dict())


def _bench_interleaved(name: str, assessor: Assessor, config: BenchConfig, paths: list[str], result: dict,
                       progress: _Progress) -> None:
    """Same-process ratios (model vs bare open_clip, end to end vs model), interleaved rounds."""
    batch = config.interleaved_batch
    needed = 3 * batch                      # a steady end-to-end rate needs batches after the first
    if len(paths) < needed:
        progress.note(f"interleaved ratios at batch {batch} use the first {len(paths)} JPEGs "
                      f"(fewer than 3 batches: the end-to-end rate includes start-up)")
    figure = measure_interleaved(name, assessor, paths[:max(needed, batch)], arch=config.arch, batch_size=batch,
                                 rounds=config.interleaved_rounds, num_workers=config.decode_workers,
                                 min_seconds=min(config.min_seconds, 2.0), seed=config.seed,
                                 compile=bool(config.compile), log=progress.log)
    result["interleaved"].append(figure.to_dict())


def _fill_flops(figure, flops_per_image: float, result: dict) -> None:
    figure.flops_per_image = flops_per_image
    figure.achieved_flops_per_s = flops_per_image * figure.images_per_s
    figure.mfu = _mfu(figure.achieved_flops_per_s, result, figure.precision)


def _describe(figure) -> str:
    mfu = f", MFU {figure.mfu:.0%}" if figure.mfu is not None else ""
    extra = f", compile {figure.compile_s:.1f}s" if figure.compile_s else ""
    return (f"[{figure.model}] {figure.mode:<10} {figure.precision} bs={figure.batch_size:<3} "
            f"{'compiled ' if figure.compiled else ''}{figure.images_per_s:.2f} img/s{mfu}{extra}")


def _bench_training(config: BenchConfig, device: torch.device, paths: list[str], result: dict,
                    progress: _Progress) -> list[dict]:
    figures = []
    common = dict(arch=config.arch, weights=config.weights, device=device, seed=config.seed)
    workers = 0 if config.decode_workers is None else config.decode_workers
    for precision in config.precisions:
        for kind in config.training:
            progress.log(f"[train] {kind} {precision}")
            if kind == "gamma-mixed":
                figure = measure_gamma_mixed(paths, precision=precision, batch_size=config.train_batch_size,
                                             steps=config.train_steps, workers=workers, **common)
            elif kind == "grmp-qgr":
                figure = measure_grmp_qgr(paths, precision=precision, batch_size=config.train_batch_size,
                                          steps=config.train_steps, workers=workers, **common)
            else:
                support = max(1, config.train_batch_size * 3 // 4)
                figure = measure_grmp_meta(precision=precision, tasks=config.meta_tasks,
                                           support=support, query=max(1, config.train_batch_size - support),
                                           min_seconds=config.min_seconds, **common)
            figure.mfu = _mfu(figure.achieved_flops_per_s, result, precision)
            figures.append(figure.to_dict())
            progress.log(f"[train] {kind} {precision}: {figure.steps_per_s:.3f} steps/s, "
                         f"{figure.images_per_s:.2f} img/s" + (f", MFU {figure.mfu:.0%}" if figure.mfu else ""))
    return figures


def _bench_peer(config: BenchConfig, device: torch.device, folder: str, progress: _Progress) -> dict:
    if not config.peer:
        return {"skipped": "--no-peer"}
    from .peer import PeerUnavailable, run_peer

    try:
        return run_peer(folder, device=str(device), max_images=config.peer_images,
                        min_seconds=config.min_seconds, threads=config.threads or 0, log=progress.log)
    except PeerUnavailable as err:
        progress.note(f"peer skipped: {err}")
        return {"skipped": str(err)}
