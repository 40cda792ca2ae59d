"""The device's dense matmul rate, measured in the run itself: the denominator of MFU.

MFU (model FLOPs utilisation) = FLOPs the model executes per second ÷ FLOPs per second a plain square
matmul reaches on the same device, in the same dtype, in the same run. Measuring the denominator rather
than quoting a datasheet peak keeps the ratio honest on shared or throttled machines and on CPUs whose
vector units the datasheet does not tell (a cloud vCPU's AVX2 vs AVX-512, bf16 emulated or native).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from .timing import synchronize


@dataclass
class MatmulRate:
    """Best rate over the sizes tried: ``flops_per_s`` at ``best_size`` (n×n @ n×n, 2·n³ FLOPs)."""

    device: str
    dtype: str
    flops_per_s: float
    best_size: int
    by_size: dict[int, float]

    def to_dict(self) -> dict:
        return asdict(self)


def measure_matmul_rate(device: torch.device | str, dtype: torch.dtype, sizes: tuple[int, ...],
                        *, min_seconds: float = 0.5, seed: int = 0) -> MatmulRate:
    """Time ``a @ b`` for square ``n×n`` operands of each size in ``sizes``; keep the fastest rate.

    Each size is warmed up once, then repeated until ``min_seconds`` have passed (at least twice).
    """
    device = torch.device(device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    by_size: dict[int, float] = {}
    for n in sizes:
        a = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
        b = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
        torch.matmul(a, b)
        synchronize(device)
        repeats, start = 0, time.perf_counter()
        while True:
            torch.matmul(a, b)
            repeats += 1
            if repeats >= 2:
                synchronize(device)
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
        by_size[n] = 2.0 * n ** 3 * repeats / elapsed
        del a, b
    best = max(by_size, key=by_size.get)
    return MatmulRate(device=str(device), dtype=str(dtype).replace("torch.", ""), flops_per_s=by_size[best],
                      best_size=best, by_size=by_size)
