"""Training plots as PNG files (GRMP-IQA Fig. 4), drawn from a run's logs.

* Fig. 4a — test SRCC per epoch, from the ``epochs.jsonl`` of one or several runs (e.g. with and
  without QGR): ``plot_srcc_per_epoch``.
* Fig. 4b — angle between G_qua and G_sem per step, from ``steps.jsonl`` (QGR logs it at every lambda,
  0 included): ``plot_gradient_angle``.

``plot_run(run_dir)`` writes both next to the logs (``srcc_per_epoch.png``, ``gradient_angle.png``).
matplotlib is an optional dependency: it is imported only when a plot is drawn, with a clear error if
it is missing.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

SRCC_PLOT = "srcc_per_epoch.png"
ANGLE_PLOT = "gradient_angle.png"


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install matplotlib") from err
    matplotlib.use("Agg")          # files only; never a window
    import matplotlib.pyplot as plt

    return plt


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSON-lines log; a malformed line is an error naming the file and line."""
    records = []
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {number}: not JSON ({err.msg})") from None
    return records


def srcc_curves(epochs_log: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """{eval set: (epochs, SRCC)} from an ``epochs.jsonl`` (epochs without metrics are skipped)."""
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for record in read_jsonl(epochs_log):
        for name, metrics in (record.get("metrics") or {}).items():
            value = metrics.get("srcc")
            if value is None or not math.isfinite(value):
                continue
            xs, ys = curves.setdefault(name, ([], []))
            xs.append(int(record["epoch"]))
            ys.append(float(value))
    return curves


def angle_series(steps_log: str | Path) -> tuple[list[int], list[float]]:
    """(step, angle in degrees) from a ``steps.jsonl``; steps with an undefined angle are skipped."""
    steps, angles = [], []
    for index, record in enumerate(read_jsonl(steps_log)):
        angle = record.get("angle_deg")
        if angle is None or not math.isfinite(angle):
            continue
        steps.append(int(record.get("step", index)))
        angles.append(float(angle))
    return steps, angles


def plot_srcc_per_epoch(runs: Mapping[str, str | Path], out_path: str | Path, *,
                        title: str = "SRCC vs. epoch") -> Path:
    """Fig. 4a: one line per (run label, eval set) from each run's ``epochs.jsonl`` (file or run folder)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    drawn = 0
    for label, log in runs.items():
        log = Path(log) / "epochs.jsonl" if Path(log).is_dir() else Path(log)
        for name, (xs, ys) in srcc_curves(log).items():
            ax.plot(xs, ys, marker="o", markersize=3, label=label if len(runs) > 1 else name)
            drawn += 1
    if not drawn:
        plt.close(fig)
        raise ValueError(f"no SRCC values in {', '.join(str(v) for v in runs.values())}: "
                         "the runs logged no test metrics")
    ax.set_xlabel("training epoch")
    ax.set_ylabel("SRCC")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out_path)


def plot_gradient_angle(runs: Mapping[str, str | Path], out_path: str | Path, *,
                        title: str = "Angle between G_qua and G_sem") -> Path:
    """Fig. 4b: the QGR angle per step, one line per run (``steps.jsonl`` file or run folder)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    drawn = 0
    for label, log in runs.items():
        log = Path(log) / "steps.jsonl" if Path(log).is_dir() else Path(log)
        steps, angles = angle_series(log)
        if steps:
            ax.plot(steps, angles, linewidth=1, label=label)
            drawn += 1
    if not drawn:
        plt.close(fig)
        raise ValueError(f"no gradient angles in {', '.join(str(v) for v in runs.values())}: "
                         "only QGR runs (train.step: qgr) log them")
    ax.axhline(90, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("angle (degrees)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out_path)


def plot_run(run_dir: str | Path, label: str | None = None) -> list[Path]:
    """Write Fig. 4a/4b PNGs into ``run_dir`` for what its logs hold; returns the files written."""
    run_dir = Path(run_dir)
    label = label or run_dir.name
    written = []
    epochs_log, steps_log = run_dir / "epochs.jsonl", run_dir / "steps.jsonl"
    if epochs_log.is_file() and srcc_curves(epochs_log):
        written.append(plot_srcc_per_epoch({label: epochs_log}, run_dir / SRCC_PLOT))
    if steps_log.is_file() and angle_series(steps_log)[0]:
        written.append(plot_gradient_angle({label: steps_log}, run_dir / ANGLE_PLOT))
    return written


def plot_runs(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Per-run plots, plus both figures over all runs together in ``out_dir`` when there are several."""
    written = [path for run in run_dirs for path in plot_run(run)]
    runs = {Path(r).name: Path(r) for r in run_dirs}
    if len(runs) > 1:
        with_srcc = {k: v for k, v in runs.items() if (v / "epochs.jsonl").is_file() and srcc_curves(v / "epochs.jsonl")}
        with_angle = {k: v for k, v in runs.items() if (v / "steps.jsonl").is_file() and angle_series(v / "steps.jsonl")[0]}
        if with_srcc:
            written.append(plot_srcc_per_epoch(with_srcc, Path(out_dir) / SRCC_PLOT))
        if with_angle:
            written.append(plot_gradient_angle(with_angle, Path(out_dir) / ANGLE_PLOT))
    return written


def _save(fig, out_path: str | Path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out_path
