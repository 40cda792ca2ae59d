"""The issue's performance targets, checked against the figures of one benchmark run.

Each check names what was compared; ``met`` is None when the run lacks a figure it needs (e.g. the peer
was skipped, or gamma was not benchmarked). Thresholds live in ``TARGETS`` (one place to change them).
"""
from __future__ import annotations

# name -> (threshold, what it means)
TARGETS = {
    "end_to_end_vs_pyiqa_clipiqa": (3.0, "perceptiq zero-shot end-to-end img/s >= 3x pyiqa CLIP-IQA end-to-end img/s"),
    "model_mfu": (0.80, "zero-shot model-bound MFU >= 80% of the measured matmul rate, in bf16 where the "
                        "device has it natively (the precision `auto` scores in)"),
    "end_to_end_vs_model": (0.95, "zero-shot end-to-end img/s (steady state: after the first batch) within 5% "
                                  "of the bare model forward (same batch and precision)"),
    "gamma_mfu_vs_zero_shot": (0.90, "Gamma's MFU within 10% of zero-shot's (same batch, precision)"),
}


def _rows(result: dict, **match) -> list[dict]:
    return [row for row in result.get("inference", []) if all(row.get(k) == v for k, v in match.items())]


def _best(rows: list[dict], key: str) -> dict | None:
    rows = [r for r in rows if r.get(key) is not None]
    return max(rows, key=lambda r: r[key]) if rows else None


def _check(name: str, measured: float | None, detail: str) -> dict:
    threshold, meaning = TARGETS[name]
    return {"name": name, "target": meaning, "threshold": threshold, "measured": measured,
            "met": None if measured is None else bool(measured >= threshold), "detail": detail}


def check_targets(result: dict) -> list[dict]:
    checks = []
    # 1. against the peer
    best_e2e = _best(_rows(result, model="zero-shot", mode="end_to_end"), "images_per_s")
    peer = (result.get("peer") or {}).get("metrics", {}).get("clipiqa")
    if best_e2e and peer:
        ratio = best_e2e["images_per_s"] / peer["end_to_end_images_per_s"]
        detail = (f"zero-shot {best_e2e['images_per_s']:.3f} img/s ({best_e2e['precision']}, batch "
                  f"{best_e2e['batch_size']}) vs pyiqa clipiqa {peer['end_to_end_images_per_s']:.3f} img/s")
    else:
        ratio, detail = None, "needs zero-shot end-to-end figures and the peer (run without --no-peer)"
    checks.append(_check("end_to_end_vs_pyiqa_clipiqa", ratio, detail))

    # 2. MFU of the bare model, at the operating precision: bf16 where it was measured (native bf16), else fp32
    zero_rows = _rows(result, model="zero-shot", mode="model")
    best_model = _best([r for r in zero_rows if r["precision"] == "bf16"] or zero_rows, "mfu")
    checks.append(_check(
        "model_mfu", best_model["mfu"] if best_model else None,
        (f"best: batch {best_model['batch_size']}, {best_model['precision']}"
         f"{', compiled' if best_model['compiled'] else ''}, "
         f"{best_model['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s") if best_model else "no zero-shot model figures"))

    # 3. end to end vs the bare model at the same batch size and precision (uncompiled: the scorer's path)
    pairs = []
    for e2e in _rows(result, model="zero-shot", mode="end_to_end"):
        bare = _rows(result, model="zero-shot", mode="model", compiled=False, precision=e2e["precision"],
                     batch_size=e2e["batch_size"])
        if bare:
            rate = e2e.get("steady_images_per_s") or e2e["images_per_s"]
            pairs.append((rate / bare[0]["images_per_s"], e2e))
    if pairs:
        # judged where the scorer is fastest (its operating point), not at the most flattering ratio
        ratio, e2e = max(pairs, key=lambda p: p[1].get("steady_images_per_s") or p[1]["images_per_s"])
        detail = f"batch {e2e['batch_size']}, {e2e['precision']}, {e2e['decode_workers']} decode worker(s); " + \
            ", ".join(f"bs{row['batch_size']} {row['precision']}: {r:.1%}" for r, row in pairs)
    else:
        ratio, detail = None, "needs zero-shot model and end-to-end figures at a common batch size"
    checks.append(_check("end_to_end_vs_model", ratio, detail))

    # 4. Gamma's MFU vs zero-shot's, same batch size / precision / compile setting
    pairs = []
    for gamma in _rows(result, model="gamma", mode="model"):
        zero = _rows(result, model="zero-shot", mode="model", compiled=gamma["compiled"],
                     precision=gamma["precision"], batch_size=gamma["batch_size"])
        if zero and gamma.get("mfu") and zero[0].get("mfu"):
            pairs.append((gamma["mfu"] / zero[0]["mfu"], gamma, zero[0]))
    if pairs:
        # judged at zero-shot's best-MFU setting (the throughput operating point), not the best ratio
        ratio, gamma, zero = max(pairs, key=lambda p: p[2]["mfu"])
        detail = (f"batch {gamma['batch_size']}, {gamma['precision']}: Gamma MFU {gamma['mfu']:.1%} vs "
                  f"zero-shot {zero['mfu']:.1%}")
    else:
        ratio, detail = None, "needs Gamma and zero-shot model figures at a common batch size"
    checks.append(_check("gamma_mfu_vs_zero_shot", ratio, detail))
    return checks
