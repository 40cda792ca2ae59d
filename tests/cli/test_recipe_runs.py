"""Issue 14 item 10: recipe runs on a small machine. Decode workers are capped to the usable CPUs (once,
with one info line); other libraries' INFO lines (open_clip's) are silenced on every command; a recipe the
model refuses (Gamma's 6 MoAE layers on the 4-block test-tiny) is refused with the fix in the message and
leaves no run folder behind."""
from __future__ import annotations

import csv
import logging

from typer.testing import CliRunner

from perceptiq.cli.main import app
from perceptiq.training import data as training_data
from perceptiq.training.data import TrainItem, capped_workers, make_loader
from perceptiq.training.transforms import ImageTransform

from ..conftest import textured_image

runner = CliRunner()


def test_workers_are_capped_to_the_usable_cpus_and_said_once(monkeypatch, caplog, recwarn):
    monkeypatch.setattr(training_data, "usable_cpus", lambda: 2)
    monkeypatch.setattr(training_data, "_reported_worker_caps", set())
    caplog.set_level(logging.INFO, logger="perceptiq")
    assert capped_workers(1) == 1 and capped_workers(2) == 2
    assert capped_workers(8) == 2 and capped_workers(8) == 2
    lines = [r.getMessage() for r in caplog.records if "workers" in r.getMessage()]
    assert lines == ["workers: 8 asked for, 2 CPU(s) usable here: using 2"]
    loader = make_loader([TrainItem("x.png", 0.5, "toy")], ImageTransform((0.5,) * 3, (0.5,) * 3, resize=8, crop=8),
                         batch_size=1, shuffle=False, num_workers=8)
    assert loader.num_workers == 2
    assert not [w for w in recwarn if "worker" in str(w.message)]


def test_every_command_silences_other_libraries_info_lines(caplog, tmp_path):
    """open_clip logs each model it builds with ``logging.info`` on the root logger; with the root at INFO
    (a library or the environment may leave it so) those lines would print on every command."""
    import open_clip.factory

    caplog.set_level(logging.INFO)                         # root at INFO before the command
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    caplog.clear()
    open_clip.factory.logging.info("Loaded built-in ViT-B-16 model config.")   # what open_clip does
    logging.getLogger("perceptiq.training").info("epoch 1")                    # ours still shows
    assert [r.getMessage() for r in caplog.records] == ["epoch 1"]


def _toy_csv(folder, n=8):
    folder.mkdir()
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "score"])
        for i in range(n):
            textured_image(i, (48, 40)).save(folder / f"i{i}.png")
            writer.writerow([f"i{i}.png", f"{i / (n - 1):.3f}"])
    return folder / "labels.csv"


def test_gamma_recipe_on_test_tiny_is_refused_with_the_fix_and_leaves_no_run_folder(tmp_path):
    labels = _toy_csv(tmp_path / "toy", n=16)      # 80/20: 3 test images, enough for SRCC
    run = tmp_path / "runs" / "gamma"
    args = ["train", "--recipe", "gamma-task", "--data", f"csv={labels}", "--set", "model.backbone=test-tiny",
            "--set", "model.weights=random", "--set", "train.epochs=1", "--set", "train.batch_size=4",
            "--set", "train.workers=0", "--max-runs", "1", "--no-progress", "-o", str(run)]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2
    assert "n_layers=6 is outside 0..4" in refused.stderr and "--set model.options.n_layers=2" in refused.stderr
    assert not run.exists() and not (tmp_path / "runs").exists()
    # the fix the message gives works, into the same (never created) folder, without --overwrite
    done = runner.invoke(app, args + ["--set", "model.options.n_layers=2"])
    assert done.exit_code == 0, done.output
    assert (run / "results.csv").is_file() and list(run.glob("*/model.safetensors"))
