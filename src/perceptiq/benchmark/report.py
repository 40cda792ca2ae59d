"""Turn a benchmark result dict into the printed tables and the JSON file."""
from __future__ import annotations

import json
import os
from pathlib import Path


def _gb(value) -> str:
    return "-" if value is None else f"{value / 2**30:.2f}"


def _pct(value) -> str:
    return "-" if value is None else f"{value:.0%}"


def _views_tables(result: dict) -> list[str]:
    """Each view end to end, and the like-for-like table: a view beside the pyiqa metric that sees the
    image the same way (LIQE's 15 native patches beside crops:15, CLIP-IQA's full image beside full)."""
    lines, rows = [], []
    for entry in result["views"]:
        for view, v in entry["summary"]["views"].items():
            crops = entry["summary"]["crops_cost_vs_n_resize"].get(view)
            rows.append([entry["model"], entry["precision"], view, str(v["inputs_per_image"]),
                         f"{v['input_shape'][2]}x{v['input_shape'][1]}", f"{v['images_per_s']:.3f}",
                         f"{v['gflops_per_image']:.1f}", f"{v['achieved_gflops_per_s']:.1f}",
                         f"{v['seconds_per_megapixel']:.3f}",
                         "-" if crops is None else f"{crops['median']:.3f} [{crops['range'][0]:.2f}-{crops['range'][1]:.2f}]"])
    first = result["views"][0]
    loads = first["summary"].get("load_average_range")
    lines.append(f"views, end to end from the same {first['n_images']} JPEGs ({first['decode']}; medians of "
                 f"{len(first['rounds'])} interleaved rounds" + (f", load average {loads[0]:.1f}-{loads[1]:.1f}" if loads else "") + "):")
    lines.append(_table(["model", "prec", "view", "inputs", "input", "img/s", "GFLOPs/img", "GFLOP/s", "s/MP",
                         "crops cost / N resize"], rows))
    peer = (result.get("peer") or {}).get("metrics", {})
    pairs = []
    for entry in result["views"]:
        for metric, figures in peer.items():
            view = figures.get("compare_with_view")
            ours = entry["summary"]["views"].get(view)
            if ours is None:
                continue
            flops = figures.get("flops_per_image")
            pairs.append([view, f"perceptiq {entry['model']} ({entry['precision']})", f"{ours['images_per_s']:.3f}",
                          f"{ours['gflops_per_image']:.1f}", f"pyiqa {metric} ({figures['backbone']}, fp32; {figures.get('input', '?')})",
                          f"{figures['end_to_end_images_per_s']:.3f}", "-" if flops is None else f"{flops / 1e9:.1f}",
                          f"{ours['images_per_s'] / figures['end_to_end_images_per_s']:.2f}x"])
    if pairs:
        lines.append("")
        lines.append("like for like, same files, same run (pyiqa with RANDOM weights of its metrics' architectures: "
                     "speed only, its scores mean nothing):")
        lines.append(_table(["view", "perceptiq", "img/s", "GFLOPs/img", "peer", "img/s", "GFLOPs/img", "speed-up"],
                            pairs))
    return lines


def _ratio(summary: dict, key: str) -> str:
    low, high = summary[key + "_range"]
    return f"{summary[key]:.3f} [{low:.2f}-{high:.2f}]"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def format_report(result: dict) -> str:
    """Human-readable summary: machine, matmul rates, inference, training, peer, targets, notes."""
    m = result["machine"]
    parts = [f"perceptiq bench — {m['date']} — {m['device']} ({m['cpu_model']}, {m['usable_cpus']} CPUs, "
             f"torch {m['torch']}, {m['torch_threads']} threads, capability {m['cpu_capability']}, "
             f"native bf16: {m['cpu_native_bf16']}{', GPU ' + m['gpu'] if m.get('gpu') else ''})",
             result["convention"], ""]
    parts.append("dense matmul rate (MFU denominator, best of the run's samples): " + ", ".join(
        f"{p} {r['flops_per_s'] / 1e9:.1f} GFLOP/s (n={r['best_size']}; samples "
        + " ".join(f"{x / 1e9:.1f}" for x in r.get("samples", [])) + ")" for p, r in result["matmul"].items()))
    parts.append("model FLOPs: " + ", ".join(
        f"{name} {f['per_image'] / 1e9:.2f} GFLOPs/image" + (f" + {f['per_batch'] / 1e9:.2f}/call" if f["per_batch"] else "")
        for name, f in result["flops"].items()))
    parts.append("")
    rows = [[r["model"], r["mode"], r["precision"], "yes" if r["compiled"] else "no", str(r["batch_size"]),
             f"{r['images_per_s']:.2f}",
             "-" if r.get("steady_images_per_s") is None else f"{r['steady_images_per_s']:.2f}",
             f"{(r['achieved_flops_per_s'] or 0) / 1e9:.1f}", _pct(r["mfu"]),
             _gb(r["host_peak_bytes"]), _gb(r["gpu_peak_bytes"]),
             "-" if r["compile_s"] is None else f"{r['compile_s']:.1f}"] for r in result["inference"]]
    parts.append(_table(["model", "mode", "prec", "compiled", "batch", "img/s", "steady", "GFLOP/s", "MFU",
                         "host GiB", "GPU GiB", "compile s"], rows))
    if result.get("interleaved"):
        parts.append("")
        parts.append("same-process ratios (interleaved rounds, order rotated; medians, [min-max] over rounds):")
        rows = []
        for entry in result["interleaved"]:
            summary = entry["summary"]
            loads = summary.get("load_average_range")
            rows.append([entry["model"], entry["precision"], str(entry["batch_size"]), str(len(entry["rounds"])),
                         " / ".join(f"{k} {v:.2f}" for k, v in summary["bare_by_variant"].items()),
                         f"{summary['model']:.2f}", f"{summary['end_to_end']:.2f}",
                         _ratio(summary, "model_vs_bare"), _ratio(summary, "end_to_end_vs_model"),
                         "-" if "compiled_vs_model" not in summary else
                         _ratio(summary, "compiled_vs_model") + f" (compile {entry['compile_s']:.0f} s)",
                         "-" if not loads else f"{loads[0]:.1f}-{loads[1]:.1f}", entry["decode"]])
        parts.append(_table(["model", "prec", "batch", "rounds", "bare open_clip img/s", "model img/s",
                             "e2e img/s", "model/bare", "e2e/model", "compiled/model", "load avg", "decode"], rows))
    if result.get("views"):
        parts.append("")
        parts.extend(_views_tables(result))
    if result.get("training"):
        parts.append("")
        rows = [[t["kind"], t["precision"], str(t["images_per_step"]), f"{t['steps_per_s']:.3f}",
                 f"{t['images_per_s']:.2f}", f"{t['flops_per_step'] / 1e9:.0f}", _pct(t["mfu"]),
                 _gb(t["host_peak_bytes"]), _gb(t["gpu_peak_bytes"])] for t in result["training"]]
        parts.append(_table(["training", "prec", "img/step", "steps/s", "img/s", "GFLOP/step", "MFU",
                             "host GiB", "GPU GiB"], rows))
    peer = result.get("peer") or {}
    parts.append("")
    if "metrics" in peer:
        rows = [[f"pyiqa {name}", v["backbone"], f"{v['model_images_per_s']:.3f}",
                 f"{v['end_to_end_images_per_s']:.3f}"] for name, v in peer["metrics"].items()]
        parts.append(f"peer: pyiqa {peer['pyiqa_version']} (random weights, {peer['n_images']} files, "
                     f"{peer['image_size'][0]}x{peer['image_size'][1]}, batch {peer['batch_size']})")
        parts.append(_table(["peer", "backbone", "model img/s", "end-to-end img/s"], rows))
    else:
        parts.append(f"peer: skipped ({peer.get('skipped', 'not run')})")
    parts.append("")
    rows = [[t["name"], f"{t['threshold']:g}", "-" if t["measured"] is None else f"{t['measured']:.3f}",
             {True: "met", False: "NOT met", None: "n/a"}[t["met"]], t["detail"]] for t in result["targets"]]
    parts.append(_table(["target", "threshold", "measured", "status", "detail"], rows))
    if result.get("notes"):
        parts.append("")
        parts.extend("note: " + n for n in result["notes"])
    return "\n".join(parts)


def write_json(result: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    return path
