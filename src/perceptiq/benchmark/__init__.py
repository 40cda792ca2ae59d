"""``perceptiq bench``: measured throughput, FLOPs, MFU, training speed and the pyiqa peer in one run.

Public entry points: :func:`run_benchmark` with a :class:`BenchConfig`, :func:`count_flops` /
:func:`forward_flops` (FLOPs counted with attention included), :func:`measure_matmul_rate` (the MFU
denominator), :func:`format_report` / :func:`write_json`. Conventions are in docs/benchmarks.md.
"""
from .flops import FlopCount, PerImageFlops, backbone_tower_macs, count_flops, forward_flops, vit_image_tower_macs
from .matmul import MatmulRate, measure_matmul_rate
from .report import format_report, write_json
from .runner import BENCH_MODELS, FLOP_CONVENTION, BenchConfig, run_benchmark
from .targets import TARGETS, check_targets

__all__ = [
    "FlopCount", "PerImageFlops", "backbone_tower_macs", "count_flops", "forward_flops", "vit_image_tower_macs",
    "MatmulRate", "measure_matmul_rate", "format_report", "write_json", "BENCH_MODELS", "FLOP_CONVENTION",
    "BenchConfig", "run_benchmark", "TARGETS", "check_targets",
]
