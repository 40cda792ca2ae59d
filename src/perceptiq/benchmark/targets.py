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
    "model_vs_bare_open_clip": (0.95, "zero-shot model-bound img/s >= 0.95x a bare open_clip forward of the same "
                                      "backbone, batch and precision (the faster of autocast and bf16 weights), "
                                      "median of interleaved rounds in one process"),
    "end_to_end_vs_model": (0.90, "zero-shot end-to-end img/s (steady state: after the first batch) >= 0.90x the "
                                  "model forward at the default decode placement; median of interleaved rounds "
                                  "where measured, else the same-batch table rows"),
    "gamma_mfu_vs_zero_shot": (0.90, "Gamma's MFU within 10% of zero-shot's (same batch, precision)"),
    "crops_cost_vs_n_resize": (1.10, "crops:N costs at most 1.1x N resize views per image, end to end from the same "
                                     "JPEGs (median of interleaved rounds; at most)"),
    "gpu_resize_end_to_end": (2000.0, "on a GPU: zero-shot end to end from JPEG files, resize view, bf16, >= 2,000 "
                                      "images/s (best batch; judged only on a CUDA device)"),
}
# Targets met when the measured figure is at most the threshold (the others: at least).
AT_MOST = frozenset({"crops_cost_vs_n_resize"})


def _rows(result: dict, **match) -> list[dict]:
    return [row for row in result.get("inference", []) if all(row.get(k) == v for k, v in match.items())]


def _best(rows: list[dict], key: str) -> dict | None:
    rows = [r for r in rows if r.get(key) is not None]
    return max(rows, key=lambda r: r[key]) if rows else None


def _check(name: str, measured: float | None, detail: str) -> dict:
    threshold, meaning = TARGETS[name]
    return {"name": name, "target": meaning, "threshold": threshold, "measured": measured,
            "met": None if measured is None else bool(measured <= threshold if name in AT_MOST else measured >= threshold),
            "detail": detail}


def _operating_interleaved(result: dict) -> dict | None:
    """The interleaved measurement at the operating precision: bf16 where measured, else fp32."""
    entries = [e for e in result.get("interleaved", []) if e.get("summary")]
    return next((e for e in entries if e["precision"] == "bf16"), entries[0] if entries else None)


def _ratio_detail(entry: dict, key: str) -> str:
    summary = entry["summary"]
    low, high = summary[key + "_range"]
    loads = summary.get("load_average_range")
    return (f"{entry['precision']}, batch {entry['batch_size']}, median of {len(entry['rounds'])} interleaved "
            f"rounds (range {low:.3f}-{high:.3f}; load average {loads[0]:.1f}-{loads[1]:.1f})" if loads else
            f"{entry['precision']}, batch {entry['batch_size']}, median of {len(entry['rounds'])} rounds "
            f"(range {low:.3f}-{high:.3f})")


def check_targets(result: dict) -> list[dict]:
    checks = []
    interleaved = _operating_interleaved(result)
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

    # 3. the model vs a bare open_clip forward, same process, interleaved
    if interleaved:
        s = interleaved["summary"]
        detail = (_ratio_detail(interleaved, "model_vs_bare") + f": model {s['model']:.2f} vs bare "
                  + ", ".join(f"{k} {v:.2f}" for k, v in s["bare_by_variant"].items()) + " img/s")
        checks.append(_check("model_vs_bare_open_clip", s["model_vs_bare"], detail))
    else:
        checks.append(_check("model_vs_bare_open_clip", None, "needs the interleaved rounds (zero-shot benchmarked)"))

    # 4. end to end vs the model: interleaved median where measured, else the table's same-batch rows
    if interleaved:
        s = interleaved["summary"]
        checks.append(_check("end_to_end_vs_model", s["end_to_end_vs_model"],
                             _ratio_detail(interleaved, "end_to_end_vs_model")
                             + f", decode {interleaved['decode']}: {s['end_to_end']:.2f} vs {s['model']:.2f} img/s"))
        return checks + [_gamma_check(result), _crops_check(result), _gpu_check(result)]
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
    return checks + [_gamma_check(result), _crops_check(result), _gpu_check(result)]


def _gpu_check(result: dict) -> dict:
    if not str(result.get("machine", {}).get("device", "")).startswith("cuda"):
        return _check("gpu_resize_end_to_end", None, "not a GPU run (run perceptiq bench --device cuda where CUDA exists)")
    rows = [r for r in _rows(result, model="zero-shot", mode="end_to_end", precision="bf16")]
    best = _best(rows, "images_per_s")
    if best is None:
        return _check("gpu_resize_end_to_end", None, "needs zero-shot bf16 end-to-end figures")
    rate = best.get("steady_images_per_s") or best["images_per_s"]
    return _check("gpu_resize_end_to_end", rate,
                  f"batch {best['batch_size']}, {best['decode_workers']} decode processes, steady rate over "
                  f"{best['n_images']} JPEGs (whole pass {best['images_per_s']:.0f} img/s)")


def _crops_check(result: dict) -> dict:
    """The crops view with the most crops, at the operating precision (bf16 where measured)."""
    entries = [e for e in result.get("views", []) if e.get("summary", {}).get("crops_cost_vs_n_resize")]
    if not entries:
        return _check("crops_cost_vs_n_resize", None, "needs resize and crops:N view figures (zero-shot, --views)")
    entry = next((e for e in entries if e["precision"] == "bf16"), entries[0])
    ratios = entry["summary"]["crops_cost_vs_n_resize"]
    view = max(ratios, key=lambda v: ratios[v]["n_crops"])
    low, high = ratios[view]["range"]
    views = entry["summary"]["views"]
    return _check("crops_cost_vs_n_resize", ratios[view]["median"],
                  f"{view} vs resize, {entry['precision']}, {entry['n_images']} files, median of "
                  f"{len(entry['rounds'])} rounds (range {low:.3f}-{high:.3f}): {views[view]['seconds_per_image']:.2f} "
                  f"vs {views['resize']['seconds_per_image']:.3f} s/image")


def _gamma_check(result: dict) -> dict:
    """Gamma's MFU vs zero-shot's, same batch size / precision / compile setting."""
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
    return _check("gamma_mfu_vs_zero_shot", ratio, detail)
