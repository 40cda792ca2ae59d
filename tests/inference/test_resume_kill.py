"""A scoring run killed with SIGKILL part-way and then resumed with ``--resume`` ends with exactly one
row per input (none lost, none twice) and the same scores as a run that was never interrupted.

The run is a real ``perceptiq score`` subprocess. As soon as its output file holds some rows it is
frozen with SIGSTOP (so it cannot finish while we look), checked to be part-way, and killed with
SIGKILL — no chance to flush or close anything beyond what each batch already did.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

N_IMAGES = 60
BATCH_SIZE = 4
POLL_S = 0.002
START_TIMEOUT_S = 120

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def make_inputs(folder: Path) -> list[str]:
    """60 noisy PNGs (slow enough to decode that the run takes several batches' time) and one
    corrupt file, which must get exactly one error row too."""
    folder.mkdir()
    for i in range(N_IMAGES):
        pixels = np.random.default_rng(i).integers(0, 256, (240, 320, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:03d}.png")
    (folder / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    return sorted(str(p) for p in folder.iterdir())


def score_command(folder: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "perceptiq", "score", str(folder), "--backbone", "test-tiny",
            "--weights", "random", "--precision", "fp32", "--output", str(output),
            "--batch-size", str(BATCH_SIZE), "--workers", "0", "--no-progress", *extra]


def child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PERCEPTIQ_WEIGHTS"}
    env["OMP_NUM_THREADS"] = "1"  # leave a core for the polling test process
    return env


def complete_rows(path: Path) -> int:
    """Rows whose line is finished (a killed writer may leave a partial last line)."""
    if not path.exists():
        return 0
    return max(path.read_bytes().count(b"\n") - 1, 0)  # minus the header


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def kill_part_way(command: list[str], output: Path, n_inputs: int) -> int:
    """Start the run, SIGKILL it once some but not all rows are written; returns rows written then."""
    process = subprocess.Popen(command, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while complete_rows(output) == 0:
            if process.poll() is not None:
                pytest.fail(f"the run ended before writing any row: {process.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("the run wrote no row in time")
            time.sleep(POLL_S)
        process.send_signal(signal.SIGSTOP)
        written = complete_rows(output)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert 0 < written < n_inputs, f"the run was not stopped part-way ({written} of {n_inputs} rows)"
    return written


def test_killed_run_resumes_to_one_row_per_input_with_uninterrupted_scores(tmp_path):
    folder = tmp_path / "images"
    inputs = make_inputs(folder)
    reference_csv, resumed_csv = tmp_path / "reference.csv", tmp_path / "resumed.csv"

    subprocess.run(score_command(folder, reference_csv), env=child_env(), check=True, capture_output=True)
    reference = {row["path"]: row for row in read_rows(reference_csv)}
    assert sorted(reference) == inputs

    written_before_kill = kill_part_way(score_command(folder, resumed_csv), resumed_csv, len(inputs))
    finished = subprocess.run(score_command(folder, resumed_csv, "--resume"), env=child_env(),
                              capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert f"skipped {written_before_kill} already done" in finished.stderr

    rows = read_rows(resumed_csv)
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)), "a path was written twice"
    assert sorted(paths) == inputs, "a path is missing"
    for row in rows:
        expected = reference[row["path"]]
        assert row["error"] == expected["error"]
        if expected["score"]:
            assert float(row["score"]) == pytest.approx(float(expected["score"]), abs=1e-5)
        else:
            assert row["score"] == ""
    broken = next(row for row in rows if row["path"].endswith("zz-broken.png"))
    assert broken["error"] and not broken["score"]
