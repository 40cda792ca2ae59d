"""Clocks and memory gauges shared by the benchmarks: device sync, repeated timing, peak memory.

Host peak memory is the process's peak resident set (``VmHWM`` in ``/proc/self/status``); Linux lets a
process reset it by writing ``5`` to ``/proc/self/clear_refs``, so each measurement gets its own peak.
Where that file cannot be written (other kernels, sandboxes) the peak is the process's peak so far and
the result says so (``host_peak_reset: false``). DataLoader worker processes are not included.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

_PROC_STATUS = "/proc/self/status"
_PROC_CLEAR_REFS = "/proc/self/clear_refs"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock times cover it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """``seconds`` per call, from ``calls`` timed calls after ``warmup`` untimed ones; ``first_call_s``
    is the first warm-up call alone (it carries torch.compile's compilation)."""

    seconds: float
    calls: int
    first_call_s: float
    all_seconds: list[float] = field(default_factory=list)


def time_calls(fn: Callable[[], object], device: torch.device, *, warmup: int = 1, min_calls: int = 2,
               min_seconds: float = 1.0, max_calls: int = 1000) -> Timing:
    """Time ``fn()``: ``warmup`` calls, then at least ``min_calls`` and until ``min_seconds`` have passed.

    The reported time per call is the median of the timed calls (robust to one call disturbed by another
    process on a shared machine); every call's time is kept in ``all_seconds``.
    """
    first_call = 0.0
    for index in range(warmup):
        start = time.perf_counter()
        fn()
        synchronize(device)
        if index == 0:
            first_call = time.perf_counter() - start
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < min_calls or (time.perf_counter() - began < min_seconds and len(times) < max_calls):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    ordered = sorted(times)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])
    return Timing(seconds=median, calls=len(times), first_call_s=first_call, all_seconds=times)


def _read_status_kib(key: str) -> int | None:
    try:
        with open(_PROC_STATUS) as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_host_peak() -> bool:
    """Start a new host peak-RSS window; False when the kernel does not allow it."""
    try:
        with open(_PROC_CLEAR_REFS, "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def host_peak_bytes() -> int | None:
    """Peak resident set size of this process since the last reset (bytes), or None off Linux."""
    kib = _read_status_kib("VmHWM")
    return None if kib is None else kib * 1024


def host_current_bytes() -> int | None:
    kib = _read_status_kib("VmRSS")
    return None if kib is None else kib * 1024


@dataclass
class PeakMemory:
    host_peak_bytes: int | None = None
    host_peak_reset: bool = False
    gpu_peak_bytes: int | None = None


class FigureRecord:
    """Methods shared by the benchmark's result dataclasses (each declares the three memory fields)."""

    def add_memory(self, peak: PeakMemory) -> None:
        self.host_peak_bytes, self.host_peak_reset = peak.host_peak_bytes, peak.host_peak_reset
        self.gpu_peak_bytes = peak.gpu_peak_bytes

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def track_peak_memory(device: torch.device):
    """``with track_peak_memory(dev) as peak:`` fills ``peak`` (a PeakMemory) when the block ends."""
    peak = PeakMemory(host_peak_reset=reset_host_peak())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield peak
    finally:
        peak.host_peak_bytes = host_peak_bytes()
        if device.type == "cuda":
            peak.gpu_peak_bytes = int(torch.cuda.max_memory_allocated(device))
