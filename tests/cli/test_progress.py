"""Issue 14 item 5: long commands show progress on stderr (and not with --no-progress); `evaluate` says
which model it evaluates."""
from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from perceptiq.cli.main import app

from ..conftest import textured_image

runner = CliRunner()


def _pristine(tmp_path, n=2):
    src = tmp_path / "pristine"
    src.mkdir()
    for i in range(n):
        textured_image(i, (64, 48)).save(src / f"p{i}.png")
    return src


def _bar_counts(text: str, label: str) -> list[tuple[int, int]]:
    """(done, total) of every refresh of the tqdm bar called ``label``."""
    return [(int(a), int(b)) for a, b in re.findall(rf"{label}:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)", text)]


@pytest.mark.parametrize("progress", [True, False])
def test_synthesize_counts_distorted_images_and_respects_no_progress(tmp_path, progress):
    src = _pristine(tmp_path)
    flag = "--progress" if progress else "--no-progress"
    result = runner.invoke(app, ["synthesize", str(src), "-o", str(tmp_path / "out"), "--types", "jpeg,darken",
                                 "--levels", "1,3", flag])
    assert result.exit_code == 0, result.output
    counts = _bar_counts(result.stderr, "synthesizing")
    if progress:   # 2 sources x 2 types x 2 levels
        assert counts[-1] == (8, 8) and {c[1] for c in counts} == {8}
    else:
        assert counts == [] and "synthesizing" not in result.stderr


def test_synthesize_reports_progress_after_each_type_of_each_source(tmp_path):
    from perceptiq.data import synthesize

    src = _pristine(tmp_path)
    (src / "broken.png").write_bytes(b"not a png")      # an unreadable source counts as done at once
    calls = []
    synthesize(src, tmp_path / "out", types=["jpeg", "darken"], levels=[1, 3], max_side=48,
               progress=lambda done, total: calls.append((done, total)))
    # broken.png (sorted first): its 2 types x 2 levels at once; then 2 images per type of p0, p1
    assert calls == [(4, 12), (6, 12), (8, 12), (10, 12), (12, 12)]


def test_synthesize_refusing_its_types_shows_no_bar(tmp_path):
    result = runner.invoke(app, ["synthesize", str(_pristine(tmp_path, 1)), "-o", str(tmp_path / "out"),
                                 "--types", "no_such_type"])
    assert result.exit_code == 2 and "unknown distortion type" in result.stderr
    assert "synthesizing" not in result.stderr


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labelled")
    src = _pristine(folder, 3)
    made = runner.invoke(app, ["synthesize", str(src), "-o", str(folder / "syn"), "--types", "jpeg",
                               "--levels", "1,3,5", "--no-progress"])
    assert made.exit_code == 0, made.output
    return folder / "syn" / "labels.csv"


@pytest.mark.parametrize("progress", [True, False])
def test_evaluate_names_the_model_and_shows_scoring_progress(labelled, progress):
    result = runner.invoke(app, ["evaluate", "--data", f"csv={labelled}", "--backbone", "test-tiny",
                                 "--weights", "random", "--precision", "fp32", "--workers", "0",
                                 "--progress" if progress else "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "model zero-shot (test-tiny, weights=random, task=quality" in result.stderr
    assert "dataset csv: 9 images" in result.stderr
    counts = _bar_counts(result.stderr, "scoring")
    assert (counts[-1] == (9, 9)) if progress else (counts == [] and "scoring" not in result.stderr)
    assert "| csv |" in result.stdout
