"""The command line: score, models, datasets, splits, evaluate — run in-process with typer's runner."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from perceptiq.cli.main import app

from ..conftest import textured_image
from ..data.replicas import write_csv

runner = CliRunner()
TINY = ["--backbone", "test-tiny", "--weights", "random", "--no-progress", "--device", "cpu", "--workers", "0"]


def test_score_folder_to_csv_with_a_bad_file(image_folder, tmp_path):
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(image_folder), *TINY, "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6
    bad = [r for r in rows if r["path"].endswith("broken.jpg")]
    assert bad[0]["score"] == "" and bad[0]["error"]
    good = [float(r["score"]) for r in rows if r["score"]]
    assert len(good) == 5 and all(0 <= s <= 1 for s in good)
    assert "scored 5, failed 1" in result.output


def test_score_jsonl_with_scene_column(image_folder, tmp_path):
    out = tmp_path / "scores.jsonl"
    result = runner.invoke(app, ["score", str(image_folder / "img0.jpg"), *TINY, "--scene", "auto",
                                 "--output", str(out)])
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text().splitlines()[0])
    assert set(row) == {"path", "score", "error", "scene"}
    assert row["scene"] in {"natural", "ai-generated", "face", "underwater"}


def test_score_prints_a_table_without_output(image_folder):
    result = runner.invoke(app, ["score", str(image_folder / "img1.jpg"), *TINY])
    assert result.exit_code == 0
    assert "img1.jpg" in result.output and "score" in result.output


def test_exit_code_is_nonzero_only_when_nothing_was_scored(tmp_path):
    bad = tmp_path / "a.jpg"
    bad.write_bytes(b"")
    result = runner.invoke(app, ["score", str(bad), str(tmp_path / "missing.png"), *TINY])
    assert result.exit_code == 1
    assert "scored 0, failed 2" in result.output


def test_unknown_model_gets_a_hint():
    result = runner.invoke(app, ["score", ".", "--model", "zero-shoot", *TINY])
    assert result.exit_code == 2 and "Did you mean 'zero-shot'" in result.output


def test_missing_weights_file_is_named(tmp_path):
    result = runner.invoke(app, ["score", ".", "--backbone", "test-tiny", "--weights",
                                 str(tmp_path / "clip.safetensors"), "--no-progress"])
    assert result.exit_code == 2 and "clip.safetensors" in result.output


def test_models_lists_metadata():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert "zero-shot" in result.output and "score range [0, 1], higher is better" in result.output


def test_datasets_lists_layouts():
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0
    for name in ("koniq10k", "tid2013", "kadid10k", "livec", "ava", "agiqa3k", "waterloo"):
        assert name in result.output


@pytest.fixture
def koniq_replica(tmp_path):
    """A KonIQ-10k layout with 20 textured images and labels in the release's CSV format."""
    root = tmp_path / "koniq"
    header = ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"]
    rows = []
    for i in range(20):
        name = f"{1000 + i}.jpg"
        (root / "1024x768").mkdir(parents=True, exist_ok=True)
        textured_image(i, (128, 96)).save(root / "1024x768" / name)
        rows.append([name, 0, 0, 0, 0, 0, 0, 3.0, 0.5, 30 + 2 * i])
    write_csv(root / "koniq10k_scores_and_distributions.csv", header, rows, quote_all=True)
    return root


def test_evaluate_prints_metrics_and_writes_csv(koniq_replica, tmp_path):
    out = tmp_path / "report.csv"
    result = runner.invoke(app, ["evaluate", "--data", f"koniq10k={koniq_replica}",
                                 "--backbone", "test-tiny", "--weights", "random", "--splits", "3",
                                 "--device", "cpu", "--workers", "0", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "srcc" in result.output.lower() and "median" in result.output.lower()
    text = out.read_text()
    assert text.count("\n") >= 4  # header, 3 splits, summary
    scatter = tmp_path / "report_scatter.png"           # the predicted-vs-MOS plot goes next to the table
    assert scatter.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {scatter}" in result.output
    again = runner.invoke(app, ["evaluate", "--data", f"koniq10k={koniq_replica}", "--backbone", "test-tiny",
                                "--weights", "random", "-o", str(tmp_path / "other.csv"), "--scatter", str(scatter)])
    assert again.exit_code == 2 and "--scatter" in again.output and "exists" in again.output


def test_splits_command_writes_reproducible_json(koniq_replica, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path in (a, b):
        result = runner.invoke(app, ["splits", "--data", f"koniq={koniq_replica}",
                                     "--splits", "2", "-o", str(path)])
        assert result.exit_code == 0, result.output
    assert json.loads(a.read_text()) == json.loads(b.read_text())
    assert "16 train / 4 test" in result.output


def test_synthesize_writes_a_generic_csv_dataset(tmp_path):
    src = tmp_path / "pristine"
    src.mkdir()
    textured_image(1, (64, 48)).save(src / "a.png")
    out = tmp_path / "synthetic"
    result = runner.invoke(app, ["synthesize", str(src), "-o", str(out), "--types", "gaussian_blur,jpeg",
                                 "--levels", "1,5"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "labels.csv").open()))
    assert len(rows) == 4 and {r["distortion"] for r in rows} == {"gaussian_blur", "jpeg"}
    by_level = {(r["distortion"], r["level"]): float(r["score"]) for r in rows}
    assert by_level[("gaussian_blur", "1")] > by_level[("gaussian_blur", "5")]


def test_splits_of_a_synthesized_csv_keep_each_reference_on_one_side(tmp_path):
    """Issue 14 item 1: a CSV with a ref column (perceptiq synthesize's) splits by reference by default."""
    src = tmp_path / "pristine"
    src.mkdir()
    for i in range(5):
        textured_image(i, (64, 48)).save(src / f"photo{i}.png")
    out = tmp_path / "synthetic"
    made = runner.invoke(app, ["synthesize", str(src), "-o", str(out), "--types", "jpeg,gaussian_blur",
                               "--levels", "1,3,5", "--no-progress"])
    assert made.exit_code == 0, made.output
    result = runner.invoke(app, ["splits", "--data", f"csv={out / 'labels.csv'}", "--splits", "3",
                                 "-o", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert "by_reference split(s)" in result.output
    from perceptiq.data import load_dataset
    from perceptiq.data.splits import load_splits

    samples = load_dataset("csv", out / "labels.csv").samples
    for split in load_splits(tmp_path / "s.json"):
        train_refs = {samples[i].ref for i in split.train}
        test_refs = {samples[i].ref for i in split.test}
        assert train_refs and test_refs and not train_refs & test_refs
