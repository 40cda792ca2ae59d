"""Tolerances for comparing floating-point results, derived from the dtype and the reduction order.

The rule (docs/training.md, "Tolerances in tests"): never a bare ``atol`` fitted to one machine. Two
results that are equal in exact arithmetic and differ only in how sums are ordered (two processes vs one,
a batch of 3 vs 3 of 1, a fused GEMM vs a loop) are compared in one of two ways:

* **against an fp64 run of the same computation**: the candidate must be as accurate as the baseline,
  ``|candidate - exact| <= SAME_SIZE * max(|baseline - exact|, floor)`` per tensor (L2 norms). The
  baseline's error is fp32's error *on this computation, on this machine's kernels*, amplification by
  Adam or by a cancelling projection included, so nothing is fitted to a CPU;
* **a-priori**, where no fp64 run is at hand: ``reduction_tolerance(dtype, n, magnitude)``, the
  probabilistic bound on rounding in an n-term sum, ``eps(dtype) * sqrt(n) * magnitude``, times
  ``SAME_SIZE``.

``SAME_SIZE`` is not a fit: two rounding errors of the same computation with different orders are random
and of the same size (their ratio stayed within 0.2-3.6 over 37 tensors of the distributed tests on an
AMD AVX512-BF16 CPU), while a real bug (a gradient not averaged over processes, a projection of the
wrong vectors) is 10^4-10^6 times larger. The floor keeps tensors that fp32 computes (almost) exactly from
making the bound zero: a few-ulp difference there is still rounding.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

SAME_SIZE = 10.0


def reduction_tolerance(dtype: torch.dtype, n_terms: int, magnitude: float) -> float:
    """Bound on the rounding difference of two orders of an ``n_terms`` sum whose terms are ``magnitude``
    in size: eps(dtype) * sqrt(n) * magnitude (the probabilistic bound; rounding errors add like a random
    walk), times SAME_SIZE."""
    return SAME_SIZE * torch.finfo(dtype).eps * math.sqrt(max(n_terms, 1)) * float(magnitude)


def _as_tensors(value) -> dict[str, torch.Tensor]:
    if isinstance(value, Mapping):
        return {str(k): torch.as_tensor(v).double() for k, v in value.items()}
    if isinstance(value, (Sequence, np.ndarray, torch.Tensor, float, int)) and not isinstance(value, str):
        return {"": torch.as_tensor(np.asarray(value, dtype=np.float64))}
    raise TypeError(f"cannot compare {type(value).__name__}")


def assert_as_accurate(candidate, baseline, exact, *, reduction_length: int, dtype: torch.dtype = torch.float32,
                       what: str = "") -> None:
    """``candidate`` is no less accurate than ``baseline``: both computed in ``dtype`` with different
    reduction orders, ``exact`` the same computation in fp64. Each may be a tensor, an array, a list of
    floats or a dict of them (compared name by name).

    Per name: |candidate - exact| <= SAME_SIZE * max(|baseline - exact|, floor), L2 norms, with floor =
    eps(dtype) * sqrt(reduction_length) * |exact| (rounding of one reduction of that length).
    """
    cand, base, ref = _as_tensors(candidate), _as_tensors(baseline), _as_tensors(exact)
    assert cand.keys() == base.keys() == ref.keys() and ref, f"{what}: different names"
    eps = torch.finfo(dtype).eps
    for name, reference in ref.items():
        error = float((cand[name] - reference).norm())
        baseline_error = float((base[name] - reference).norm())
        floor = eps * math.sqrt(reduction_length) * float(reference.norm())
        bound = SAME_SIZE * max(baseline_error, floor)
        assert error <= bound, (
            f"{what}{'.' if what and name else ''}{name}: error {error:.3g} against the fp64 result, "
            f"{error / max(baseline_error, floor):.3g} times the one-process {dtype} error {baseline_error:.3g} "
            f"(floor {floor:.3g}); allowed {SAME_SIZE:g} times")
