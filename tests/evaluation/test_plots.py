"""The predicted-vs-MOS scatter: the numbers in its legend and the curve it draws are the metrics' own."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from perceptiq.evaluation.metrics import logistic4
from perceptiq.evaluation.plots import ScatterPanel, panel_summary, save_scatter


def test_summary_fits_the_logistic_the_points_follow_and_leaves_out_nan():
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(0, 1, 60))
    y = logistic4(x, 0.9, 0.1, 0.5, 0.08) + rng.normal(0, 0.01, x.size)
    x_with_nan = np.concatenate([x, [np.nan, np.nan]])
    y_with_nan = np.concatenate([y, [0.5, 0.5]])
    summary = panel_summary(ScatterPanel("t", x_with_nan, y_with_nan))
    assert summary["n"] == 60
    assert summary["srcc"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert summary["plcc"] == pytest.approx(stats.pearsonr(x, y).statistic)
    grid = np.linspace(0.05, 0.95, 7)
    np.testing.assert_allclose(summary["fit"](grid), logistic4(grid, 0.9, 0.1, 0.5, 0.08), atol=0.02)


def test_too_few_points_give_no_correlation_and_no_curve():
    summary = panel_summary(ScatterPanel("t", [0.1, 0.2], [0.3, 0.1]))
    assert summary["n"] == 2 and np.isnan(summary["srcc"]) and summary["fit"] is None


def test_one_panel_per_dataset_in_one_png(tmp_path):
    rng = np.random.default_rng(1)
    panels = [ScatterPanel(f"set {i}", rng.uniform(size=20), rng.uniform(size=20)) for i in range(4)]
    path = save_scatter(panels, tmp_path / "a" / "scatter.png", columns=2)
    with Image.open(path) as image:
        width, height = image.size
    assert width > height * 0.9                      # 2 x 2 panels
    with pytest.raises(ValueError, match="no panels"):
        save_scatter([], tmp_path / "b.png")
