"""`perceptiq reproduce-builtin` on a small photo set: one table with every baseline from the same run."""
import json
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "images"


def test_builtin_report_scores_every_scorer_on_the_same_files(tmp_path):
    from typer.testing import CliRunner

    from perceptiq.cli.main import app

    photos = tmp_path / "photos"
    for role, names in (("train", ["astronaut", "chelsea"]), ("heldout", ["rocket"])):
        (photos / role).mkdir(parents=True)
        for name in names:
            (photos / role / f"{name}.jpg").write_bytes((EXAMPLES / f"{name}.jpg").read_bytes())
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["reproduce-builtin", "--photos", str(photos), "--max-side", "256",
                                      "--work-dir", str(tmp_path / "work"), "-o", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out / "report.json").read_text())
    assert set(report["summary"]) == {"niqe", "laplacian_variance", "perceptiq-tiny-v1", "perceptiq-tiny"}
    for numbers in report["summary"].values():
        assert np.isfinite(numbers["pooled_srcc"]) and 0 <= numbers["pristine_win_rate"] <= 1
    assert set(report["beats"]) == {"niqe", "laplacian_variance", "perceptiq-tiny-v1"}
    text = (out / "report.md").read_text()
    assert "| perceptiq-tiny |" in text.replace("  ", " ") or "perceptiq-tiny" in text
    assert "1 held-out photographs x 25 types x 5 levels" in text
    # where the pooled SRCC goes, for every scorer, and the candidate's drops by type and level
    assert "## Where the pooled SRCC goes" in text and "Mean drop of perceptiq-tiny's quality" in text
    diagnosis = report["diagnosis"]
    assert set(diagnosis) == set(report["summary"])
    assert len(diagnosis["perceptiq-tiny"]["drops"]) == 25
    assert diagnosis["niqe"]["pooled_srcc"] == pytest.approx(report["summary"]["niqe"]["pooled_srcc"])
    # the held-out distortions and NIQE's fit are reused by a second run
    stamp = (tmp_path / "work" / "heldout-settings.json").stat().st_mtime_ns
    result = CliRunner().invoke(app, ["reproduce-builtin", "--photos", str(photos), "--max-side", "256",
                                      "--work-dir", str(tmp_path / "work"), "-o", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "work" / "heldout-settings.json").stat().st_mtime_ns == stamp


def test_builtin_report_needs_both_photo_folders(tmp_path):
    from perceptiq.reproduce.builtin_model import run_builtin_report

    (tmp_path / "photos" / "heldout").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="train"):
        from perceptiq.reproduce.builtin_model import fitted_niqe

        fitted_niqe(tmp_path / "photos", tmp_path / "work", max_side=256)
    with pytest.raises(FileNotFoundError, match="heldout"):
        run_builtin_report(tmp_path / "nothing", tmp_path / "work")
