"""Issue 14 item 12: the printed table has the files' column order and a precision that fits the model's
dtype; files keep the digits fp32 holds, not float64's 17."""
from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
from typer.testing import CliRunner

from perceptiq.cli.main import app
from perceptiq.inference.writers import TableWriter, open_writer, stored_scores, table_decimals

runner = CliRunner()
TINY = ["--backbone", "test-tiny", "--weights", "random", "--no-progress", "--device", "cpu", "--workers", "0"]


def test_table_columns_follow_the_files_and_decimals_follow_the_dtype():
    stream = io.StringIO()
    table = TableWriter(("path", "score", "error", "scene"), stream, score_decimals=table_decimals("bf16"))
    table.write_rows([{"path": "a.jpg", "score": 0.8776998519897461, "error": None, "scene": "natural"},
                      {"path": "bad.jpg", "score": None, "error": "not an image", "scene": None}])
    header, good, bad = stream.getvalue().splitlines()
    assert header.split() == ["path", "score", "error", "scene"]
    assert good.split() == ["a.jpg", "0.878", "natural"] and bad.split()[:2] == ["bad.jpg", "failed"]
    assert table_decimals("fp32") == 4 and table_decimals("bf16") == 3


def test_files_keep_the_digits_fp32_holds(tmp_path):
    value = float(np.float32(0.8776998519897461))
    assert repr(value) == "0.8776998519897461" and stored_scores([value]) == [0.87769985]
    assert np.float32(stored_scores([value])[0]) == np.float32(value)            # nothing fp32 held is lost
    for name in ("s.csv", "s.jsonl"):
        with open_writer(tmp_path / name) as writer:
            writer.write_rows([{"path": "a.jpg", "score": value, "error": None}])
        text = (tmp_path / name).read_text()
        assert "0.87769985" in text and "0.8776998519897461" not in text


def test_score_prints_the_files_order_with_four_decimals_and_writes_fp32_digits(image_folder, tmp_path):
    printed = runner.invoke(app, ["score", str(image_folder), *TINY, "--precision", "fp32"])
    assert printed.exit_code == 0, printed.output
    lines = printed.stdout.splitlines()
    assert lines[0].split() == ["path", "score", "error"]
    scores = [line.split()[1] for line in lines[1:] if "broken" not in line]
    assert scores and all(re.fullmatch(r"\d\.\d{4}", s) for s in scores), scores
    out = tmp_path / "s.csv"
    assert runner.invoke(app, ["score", str(image_folder), *TINY, "--precision", "fp32", "-o", str(out)]).exit_code == 0
    written = [r["score"] for r in csv.DictReader(out.open()) if r["score"]]
    assert written and all(str(np.float32(float(s))) == s for s in written)   # shortest fp32 text
    printed_by_path = {line.split()[0]: line.split()[1] for line in lines[1:] if "broken" not in line}
    for row in csv.DictReader(out.open()):
        if row["score"]:
            assert printed_by_path[row["path"]] == f"{float(row['score']):.4f}"
    assert json.dumps(float(written[0])) == written[0]
