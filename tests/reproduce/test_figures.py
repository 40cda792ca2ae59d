"""The figure targets run end to end on the replicas and write their PNGs and numbers; the pieces they
are made of (semantic-noise points, gMAD pair selection, Fig. 5a's paper points) are checked by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from perceptiq.reproduce.figures import gmad_pairs, semantic_noise
from perceptiq.reproduce.run import run_target
from perceptiq.reproduce.targets import get_target

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one torch thread (conftest)


def test_semantic_noise_points_by_hand():
    confidence = np.array([0.9, 0.95, 0.5, 0.99, 0.85, 0.9])
    tuned = np.array([1, 2, 1, 3, 0, 4])
    original = np.array([1, 2, 1, 3, 1, 4])           # image 4: the tuned model's class is not the original's
    predicted = np.array([0.9, 0.1, 0.2, 0.8, 0.3, 0.6])
    mos = np.array([0.1, 0.2, 0.9, 0.7, 0.8, 0.4])    # medians: predicted 0.45, MOS 0.55
    # wrong side of the median: 0 (high vs low), 1 (low, low: right), 2 (low vs high), 3 right, 4 wrong, 5 (high vs low)
    assert semantic_noise(confidence, tuned, original, predicted, mos).tolist() == [True, False, False, False, False, True]


def test_gmad_picks_the_attackers_extremes_among_equal_defender_scores():
    defender = np.array([0.10, 0.11, 0.12, 0.50, 0.90, 0.91, 0.89, 0.30])
    attacker = np.array([0.70, 0.20, 0.40, 0.50, 0.10, 0.80, 0.60, 0.90])
    assert gmad_pairs(defender, attacker, 0.0, 3) == (0, 1)         # low level: images 0, 1, 2
    assert gmad_pairs(defender, attacker, 1.0, 3) == (5, 4)         # high level: images 4, 5, 6


FIGURES = ["gamma-fig5a", "gamma-fig5b", "grmp-fig4", "grmp-fig1", "grmp-fig2", "grmp-agiqa3k", "grmp-fig5"]


@pytest.mark.parametrize("name", FIGURES)
def test_figure_target_writes_its_png_and_numbers(name, quick_context, tmp_path):
    target = get_target(name)
    report = run_target(name, quick_context(target), tmp_path / name, label="tiny replicas")
    # AGIQA-3K's few-shot results are a table (and its scatter plot); every other target draws its figure
    figures = [f.path for f in report.figures if "scatter" not in f.path.parts or name == "grmp-agiqa3k"]
    assert figures and all(p.is_file() and p.read_bytes()[:4] == b"\x89PNG" for p in figures)
    cells = [c for _, _, c in report.cells()]
    assert cells and any(c.ours is not None and math.isfinite(c.ours) for c in cells)
    markdown = (tmp_path / name / "report.md").read_text()
    assert all(p.name in markdown for p in figures)
    if name == "gamma-fig5a":
        experts = next(s for s in report.sections if "experts" in s.title)
        zero = next(r for r in experts.rows if r.label == "0 experts").cells[0]
        assert zero.paper == pytest.approx(np.mean([0.765, 0.852, 0.792, 0.800, 0.750]))   # Table 3, row 1
        assert zero.ours is not None
    if name == "grmp-fig1":
        counted = next(s for s in report.sections if s.title.startswith("Semantic-noise"))
        assert [r.cells[1].ours for r in counted.rows] == [52.0, 52.0]      # KonIQ 50-shot split: 52 test images
    if name == "grmp-fig5":
        pairs = next(s for s in report.sections if s.title.startswith("gMAD"))
        assert len(pairs.rows) == 4
