"""Outputs are checked before any work (issue 14, items 3, 4, 6, 10): a bad or existing --output is refused
before a model loads or a folder is made, and an empty input says "no images found"."""
from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

import perceptiq.inference
from perceptiq.cli.main import app

from ..conftest import textured_image

runner = CliRunner()
TINY = ["--backbone", "test-tiny", "--weights", "random", "--no-progress", "--device", "cpu", "--workers", "0"]


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fails the test if a command gets as far as loading a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the command refused its output")

    monkeypatch.setattr(perceptiq.inference, "load_model", refuse)


@pytest.mark.parametrize("name, message", [
    ("out.txt", "unknown file type '.txt'; use .csv or .jsonl"),
    ("out", "unknown file type '(none)'"),
])
def test_score_refuses_an_unknown_output_type_before_loading_the_model(image_folder, tmp_path, name, message,
                                                                       no_model_loading):
    result = runner.invoke(app, ["score", str(image_folder), *TINY, "--output", str(tmp_path / name)])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_score_refuses_an_output_under_a_file(image_folder, tmp_path, no_model_loading):
    (tmp_path / "afile").write_text("x")
    result = runner.invoke(app, ["score", str(image_folder), *TINY, "-o", str(tmp_path / "afile" / "out.csv")])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output


def test_score_refuses_to_overwrite_without_resume_or_overwrite(image_folder, tmp_path, no_model_loading):
    out = tmp_path / "scores.csv"
    out.write_text("path,score,error\nkeep.jpg,0.5,\n")
    result = runner.invoke(app, ["score", str(image_folder), *TINY, "-o", str(out)])
    assert result.exit_code == 2
    assert "exists; add --overwrite to replace it or --resume to continue it" in result.output
    assert out.read_text() == "path,score,error\nkeep.jpg,0.5,\n"
    both = runner.invoke(app, ["score", str(image_folder), *TINY, "-o", str(out), "--resume", "--overwrite"])
    assert both.exit_code == 2 and "contradict" in both.output


def test_score_overwrite_replaces_the_file(image_folder, tmp_path):
    out = tmp_path / "scores.csv"
    out.write_text("path,score,error\nkeep.jpg,0.5,\n")
    result = runner.invoke(app, ["score", str(image_folder), *TINY, "-o", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6 and "keep.jpg" not in {r["path"] for r in rows}


def test_empty_folder_says_no_images_found(tmp_path, no_model_loading):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("not an image")
    result = runner.invoke(app, ["score", str(empty), *TINY])
    assert result.exit_code == 1
    assert f"no images found in {empty}" in result.output and ".jpg" in result.output


def test_evaluate_and_splits_refuse_existing_or_wrong_outputs_before_work(tmp_path, no_model_loading):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,score\na.png,0.5\n")
    report = tmp_path / "report.md"
    report.write_text("old")
    result = runner.invoke(app, ["evaluate", "--data", f"csv={labels}", *TINY[:4], "-o", str(report)])
    assert result.exit_code == 2 and "exists; add --overwrite" in result.output and report.read_text() == "old"
    wrong = runner.invoke(app, ["evaluate", "--data", f"csv={labels}", *TINY[:4], "-o", str(tmp_path / "r.txt")])
    assert wrong.exit_code == 2 and "use .md or .csv" in wrong.output
    splits = runner.invoke(app, ["splits", "--data", f"csv={labels}", "-o", str(tmp_path / "s.yaml")])
    assert splits.exit_code == 2 and "use .json" in splits.output


def test_synthesize_refuses_an_empty_source_and_a_used_output_without_creating_anything(tmp_path):
    source = tmp_path / "pristine"
    source.mkdir()
    out = tmp_path / "synthetic"
    result = runner.invoke(app, ["synthesize", str(source), "-o", str(out), "--no-progress"])
    assert result.exit_code == 1 and f"no images found in {source}" in result.output and not out.exists()
    textured_image(1, (64, 48)).save(source / "a.png")
    out.mkdir()
    (out / "labels.csv").write_text("path,score\n")
    used = runner.invoke(app, ["synthesize", str(source), "-o", str(out), "--no-progress"])
    assert used.exit_code == 2 and "not empty; add --overwrite" in used.output
    assert "overwrite=True" not in used.output
    done = runner.invoke(app, ["synthesize", str(source), "-o", str(out), "--overwrite", "--no-progress",
                               "--types", "jpeg", "--levels", "1,5"])
    assert done.exit_code == 0, done.output
    assert len(list(csv.DictReader((out / "labels.csv").open()))) == 2


def test_train_refuses_a_used_run_folder_before_loading_anything(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.md").write_text("an earlier run")
    result = runner.invoke(app, ["train", "--recipe", "gamma-task", "--data", "koniq10k=/nonexistent",
                                 "-o", str(run), "--no-progress"])
    assert result.exit_code == 2 and "not empty; add --overwrite" in result.output
    assert [p.name for p in run.iterdir()] == ["results.md"]


def test_train_resume_is_refused_where_it_cannot_continue(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.md").write_text("an earlier run")
    args = ["train", "--recipe", "gamma-task", "--data", "koniq10k=/nonexistent", "-o", str(run), "--no-progress"]
    both = runner.invoke(app, [*args, "--resume", "--overwrite"])
    assert both.exit_code == 2 and "--resume and --overwrite contradict" in both.output
    foreign = runner.invoke(app, [*args, "--resume"])
    assert foreign.exit_code == 2 and "holds no resumable run (no run.json" in foreign.output
    assert [p.name for p in run.iterdir()] == ["results.md"]


def test_train_resume_with_other_settings_names_the_keys_before_loading_data(tmp_path):
    from perceptiq.recipes import load_recipe
    from perceptiq.training.resume import record_new_run, run_identity

    run = tmp_path / "run"
    recorded = load_recipe("gamma-task")
    recorded["protocol"]["datasets"] = ["koniq10k"]    # as the command records it: the datasets given with --data
    recorded["train"]["lr"] = 0.5
    record_new_run(run, run_identity(recorded, {"koniq10k": "/nonexistent"}, missing="error"))
    result = runner.invoke(app, ["train", "--recipe", "gamma-task", "--data", "koniq10k=/nonexistent", "-o", str(run),
                                 "--resume", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "other settings (1 differ: recipe.train.lr: recorded 0.5, now" in result.output
    assert [p.name for p in run.iterdir()] == ["run.json"]


def test_ray_resume_of_a_single_parquet_file_is_refused_before_loading_the_model(image_folder, tmp_path):
    result = runner.invoke(app, ["score", str(image_folder), *TINY, "--engine", "ray", "-o",
                                 str(tmp_path / "scores.parquet"), "--resume"])
    assert result.exit_code == 2 and "single Parquet file, unreadable until" in result.output
    assert "model " not in result.output                     # refused before the model line
