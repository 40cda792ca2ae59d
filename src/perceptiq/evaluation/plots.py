"""Predicted score against MOS, the picture every IQA paper shows: one panel per dataset (or setting),
the points, the fitted 4-parameter logistic (VQEG; ``metrics.fit_logistic``) and SRCC / PLCC in the
legend. matplotlib is optional (the ``plots`` extra) and imported only when a figure is drawn.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .metrics import compute_metrics_with_notes, fit_logistic


@dataclass(frozen=True)
class ScatterPanel:
    """One panel: ``predicted`` and ``mos`` of the same N images (NaN predictions are left out)."""

    title: str
    predicted: Sequence[float]
    mos: Sequence[float]


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or an ImportError that says how to get it."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'perceptiq[plots]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def panel_summary(panel: ScatterPanel) -> dict:
    """{'n', 'srcc', 'plcc', 'fit'} of a panel's finite pairs; correlations NaN where undefined."""
    x = np.asarray(panel.predicted, dtype=np.float64)
    y = np.asarray(panel.mos, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    summary = {"n": int(x.size), "srcc": math.nan, "plcc": math.nan, "fit": None, "x": x, "y": y}
    if x.size >= 3:
        metrics, _ = compute_metrics_with_notes(x, y)
        summary.update(srcc=metrics["srcc"], plcc=metrics["plcc"])
        if x.size >= 4 and np.ptp(x) > 0 and np.ptp(y) > 0:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = fit_logistic(x, y, "logistic4")
            summary["fit"] = fit if fit.converged else None
    return summary


def _number(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.3f}"


def save_scatter(panels: Sequence[ScatterPanel], path: str | Path, *, title: str | None = None,
                 columns: int = 3) -> Path:
    """Write one PNG with a panel per entry of ``panels``: predicted score (x) against MOS (y), the fitted
    logistic curve, and SRCC / PLCC in the legend. Returns the path."""
    panels = list(panels)
    if not panels:
        raise ValueError("no panels to plot")
    plt = pyplot()
    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels):
        summary = panel_summary(panel)
        x, y = summary["x"], summary["y"]
        ax.scatter(x, y, s=8, alpha=0.6, color="tab:blue", edgecolors="none",
                   label=f"{summary['n']} images: SRCC {_number(summary['srcc'])}, PLCC {_number(summary['plcc'])}")
        if summary["fit"] is not None:
            grid = np.linspace(float(x.min()), float(x.max()), 200)
            ax.plot(grid, summary["fit"](grid), color="tab:red", linewidth=1.2, label="logistic fit (4 parameters)")
        ax.set_title(panel.title, fontsize=9)
        ax.set_xlabel("predicted score", fontsize=8)
        ax.set_ylabel("MOS (normalised)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.locator_params(nbins=4)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # fixed margins, not tight_layout: measuring every tick label costs more than the rest of the figure
    fig.subplots_adjust(left=0.09 / columns ** 0.5, right=0.98, bottom=0.16 / rows ** 0.5, top=1 - 0.14 / rows ** 0.6,
                        wspace=0.3, hspace=0.45)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
