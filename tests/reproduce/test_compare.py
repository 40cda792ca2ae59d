"""``perceptiq reproduce compare``: every method on the same test parts, one table."""
from __future__ import annotations

import csv
import math

import pytest
from typer.testing import CliRunner

from perceptiq.cli.main import app
from perceptiq.data.splits import load_splits

from .conftest import QUICK

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one torch thread (conftest)


def test_compare_puts_every_method_on_the_same_splits(few_shot_roots, runs_dir, tmp_path):
    chosen = {n: few_shot_roots[n] for n in ("csiq", "tid2013", "kadid10k")}
    result = CliRunner().invoke(app, ["reproduce", "compare", *[f"--data={k}={v}" for k, v in chosen.items()],
                                      *[f"--set={o}" for o in QUICK], "--runs", str(runs_dir), "-o",
                                      str(tmp_path / "cmp"), "--no-progress"])
    assert result.exit_code == 0, result.output
    table = (tmp_path / "cmp" / "report.md").read_text()
    for method in ("zero-shot", "GRMP-IQA, 50 images", "GRMP-IQA, 100 images", "GRMP-IQA, 200 images",
                   "Gamma-T", "Gamma (mixed"):
        assert method in table
    assert "TID2013 SRCC" not in table and "CSIQ SRCC" in table      # the meta-training sets are not compared
    tests = {}
    for run in ("compare-grmp-fewshot", "compare-gamma-task", "compare-gamma-mixed"):
        for split in load_splits(runs_dir / run / "splits.json"):
            tests.setdefault((split.dataset, split.seed), set()).add(tuple(split.test))
    assert {d for d, _ in tests} == {"csiq"}
    assert all(len(parts) == 1 for parts in tests.values()), tests          # one test part per dataset and seed
    csiq_refs = [s for s in load_splits(runs_dir / "compare-gamma-mixed" / "splits.json") if s.dataset == "csiq"]
    assert csiq_refs[0].mode == "by_reference"                                # synthetic: split by reference image
    with open(tmp_path / "cmp" / "report.csv", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 6 * 2 and all(not math.isnan(float(line["ours"])) for line in lines)
