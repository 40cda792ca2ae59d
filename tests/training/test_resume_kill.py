"""A real ``perceptiq train`` run killed with SIGKILL in the middle of its second unit, then run again with
``--resume``, ends with what an uninterrupted run ends with: the same results table, each unit's
checkpoint equal within a few ulps of fp32 (in practice bitwise), every unit and epoch recorded once.

The run is a subprocess on a tiny synthesized dataset (``perceptiq.data.synthesize``) with the random
``test-tiny`` backbone. Once the second unit has committed the state of its first epoch the process is
frozen with SIGSTOP (so it cannot finish while we look), checked to be part-way, and killed with SIGKILL —
no chance to flush or close anything.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from ..conftest import textured_image
from .test_resume import assert_within_ulps

EPOCHS = 2
POLL_S = 0.005
START_TIMEOUT_S = 300

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

RECIPE = f"""
name: resume-kill
model: {{name: gamma, backbone: test-tiny, weights: random, options: {{n_layers: 1, n_experts: 2}}}}
protocol:
  kind: separate
  datasets: [csv]
  split: {{mode: by_reference, n_splits: 2, train_fraction: 0.75}}
train: {{epochs: {EPOCHS}, batch_size: 4, lr: 0.01, scheduler: cosine, precision: fp32, workers: 0}}
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A recipe with two units (two split seeds) of EPOCHS epochs on 4 references x 2 types x 2 levels."""
    from perceptiq.data import synthesize

    root = tmp_path_factory.mktemp("resume_kill")
    for i in range(4):
        textured_image(i, (80, 64)).save(root / f"src{i}.png")
    labels = synthesize(root, root / "synthetic", types=["darken", "contrast_change"], levels=[1, 4], seed=0)
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE)
    return recipe, labels


def train_command(recipe, labels, output, *extra: str) -> list[str]:
    return [sys.executable, "-m", "perceptiq", "train", "--recipe", str(recipe), "--data", f"csv={labels}",
            "--output", str(output), "--device", "cpu", "--no-progress", *extra]


def child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PERCEPTIQ_WEIGHTS"}
    env["OMP_NUM_THREADS"] = "1"  # the same thread count in every run (and a core left for the poller)
    return env


def committed_epoch(unit_dir) -> int:
    path = unit_dir / "state" / "state.json"
    try:
        return json.loads(path.read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):  # absent, or replaced while we read
        return 0


def kill_in_second_unit(command: list[str], output) -> tuple[str, int]:
    """Start the run; SIGKILL it once its second unit has committed one epoch. Returns (unit, epoch)."""
    process = subprocess.Popen(command, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            units = sorted(p for p in output.glob("*/") if p.is_dir()) if output.is_dir() else []
            finished = [u for u in units if (u / "unit.json").is_file()]
            running = [u for u in units if u not in finished and committed_epoch(u) >= 1]
            if finished and running:
                break
            if process.poll() is not None:
                pytest.fail(f"the run ended before its second unit got going: {process.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("the run did not reach its second unit in time")
            time.sleep(POLL_S)
        process.send_signal(signal.SIGSTOP)
        unit = running[0]
        epoch = committed_epoch(unit)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert 1 <= epoch < EPOCHS and not (unit / "unit.json").exists(), "the run was not stopped part-way"
    assert not (output / "results.csv").exists()
    return unit.name, epoch


def test_a_killed_training_run_resumes_to_the_uninterrupted_result(inputs, tmp_path):
    recipe, labels = inputs
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    done = subprocess.run(train_command(recipe, labels, straight), env=child_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    units = sorted(p.name for p in straight.iterdir() if p.is_dir())
    assert len(units) == 2

    killed_unit, epoch = kill_in_second_unit(train_command(recipe, labels, resumed), resumed)
    assert killed_unit == units[1]
    finished = subprocess.run(train_command(recipe, labels, resumed, "--resume"), env=child_env(),
                              capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert f"{units[0]} finished earlier" in finished.stderr                   # skipped, read back
    assert f"resuming after epoch {epoch} of {EPOCHS}" in finished.stderr       # continued, not restarted

    assert (resumed / "results.csv").read_text() == (straight / "results.csv").read_text()
    rows = (resumed / "results.csv").read_text()
    for unit in units:
        expected = load_file(str(straight / unit / "model.safetensors"))
        got = load_file(str(resumed / unit / "model.safetensors"))
        assert got.keys() == expected.keys()
        for name in expected:
            assert_within_ulps(got[name], expected[name], f"{unit}/{name}")
        logged = [json.loads(line)["epoch"] for line in (resumed / unit / "epochs.jsonl").read_text().splitlines()]
        assert logged == list(range(1, EPOCHS + 1)), f"{unit}: epochs {logged}"     # none twice, none lost
        steps = (resumed / unit / "steps.jsonl").read_text().splitlines()
        assert [json.loads(s)["loss"] for s in steps] == \
               [json.loads(s)["loss"] for s in (straight / unit / "steps.jsonl").read_text().splitlines()]
        assert not (resumed / unit / "state").exists()
    assert sum(line.startswith("split,") for line in rows.splitlines()) == len(units)   # one row per unit
