"""Result writers: CSV/JSONL round trips, resume after a killed run, table output, run summary."""
import io
import json
import os

import numpy as np
import pytest

from perceptiq.inference import writers
from perceptiq.inference.writers import (
    CsvResultWriter,
    JsonlResultWriter,
    ResultFileError,
    RunSummary,
    TableWriter,
    open_writer,
    read_done_paths,
    read_result_rows,
    repair_truncated_tail,
)

COLUMNS = ("path", "score", "error", "scene")

ROWS = [
    # Scores as fp32 holds them: writers store the shortest decimal of the fp32 value (``stored_scores``),
    # so these rows read back unchanged; ``test_scores_are_stored_with_the_digits_fp32_holds`` covers the rest.
    {"path": "plain.jpg", "score": 0.3, "error": None, "scene": "portrait"},
    {"path": "with,comma and \"quotes\".png", "score": None, "error": "not an image", "scene": None},
    {"path": "line\nbreak.jpg", "score": -1.5e-7, "error": None, "scene": "night"},
    {"path": "ünïcödé\u2028name.webp", "score": 3.0, "error": None, "scene": "landscape"},
    {"path": "missing.jpg", "score": None, "error": "file not found", "scene": None},
]


def write(path, rows, columns=COLUMNS, resume=False):
    with open_writer(path, columns=columns, resume=resume) as writer:
        writer.write_rows(rows)
        writer.flush()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_round_trip(tmp_path, suffix):
    path = tmp_path / f"results{suffix}"
    write(path, ROWS)
    assert read_result_rows(path) == ROWS
    assert read_done_paths(path) == {row["path"] for row in ROWS}
    assert read_done_paths(path, include_failed=False) == {r["path"] for r in ROWS if r["score"] is not None}


def test_writer_kind_follows_extension(tmp_path):
    assert isinstance(open_writer(tmp_path / "a.CSV", columns=COLUMNS), CsvResultWriter)
    assert isinstance(open_writer(tmp_path / "a.jsonl", columns=COLUMNS), JsonlResultWriter)
    assert isinstance(open_writer(None, columns=COLUMNS), TableWriter)
    with pytest.raises(ValueError, match=r"\.xlsx.*use one of \['\.csv', '\.jsonl'\]"):
        open_writer(tmp_path / "a.xlsx")


def test_csv_layout_is_plain(tmp_path):
    path = tmp_path / "r.csv"
    write(path, ROWS[:2])
    assert path.read_text(encoding="utf-8").split("\n")[:2] == [
        "path,score,error,scene",
        "plain.jpg,0.3,,portrait",
    ]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_scores_are_stored_with_the_digits_fp32_holds(tmp_path, suffix):
    # A float64 sum and an fp32 score widened to float64 both carry digits the model never computed.
    widened = float(np.float32(0.8776998519897461))
    rows = [{"path": "a.jpg", "score": 0.1 + 0.2, "error": None, "scene": None},
            {"path": "b.jpg", "score": widened, "error": None, "scene": None}]
    path = tmp_path / f"r{suffix}"
    write(path, rows)
    text = path.read_text(encoding="utf-8")
    assert "0.30000000000000004" not in text and "0.8776998519897461" not in text
    read = [row["score"] for row in read_result_rows(path)]
    assert read == [0.3, 0.87769985]
    # Nothing the fp32 value holds is lost: each stored decimal reads back to the identical fp32 number.
    assert [np.float32(value) for value in read] == [np.float32(0.1 + 0.2), np.float32(widened)]


def test_jsonl_layout_uses_null(tmp_path):
    path = tmp_path / "r.jsonl"
    write(path, ROWS[1:2])
    assert json.loads(path.read_text(encoding="utf-8")) == ROWS[1]
    assert '"score": null' in path.read_text(encoding="utf-8")


def test_rows_with_unknown_columns_and_bad_column_sets_are_refused(tmp_path):
    with open_writer(tmp_path / "r.csv", columns=("path", "score", "error")) as writer:
        with pytest.raises(ValueError, match=r"row for 'a.jpg' has columns \['scene'\]"):
            writer.write_rows([{"path": "a.jpg", "score": 1.0, "error": None, "scene": "x"}])
    with pytest.raises(ValueError, match="lack the required result columns"):
        open_writer(tmp_path / "r2.csv", columns=("path", "score"))


def test_flush_fsyncs_and_missing_columns_are_empty(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(writers.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "r.csv"
    writer = open_writer(path, columns=COLUMNS)
    n_before = len(synced)
    writer.write_rows([{"path": "a.jpg", "score": 0.5}])
    writer.flush()
    assert len(synced) == n_before + 1
    # already on disk before close
    assert read_result_rows(path) == [{"path": "a.jpg", "score": 0.5, "error": None, "scene": None}]
    writer.close()


def kill_mid_row(path, partial_row_text):
    """Simulate a run killed while writing: half a row, no final newline."""
    with open(path, "ab") as handle:
        handle.write(partial_row_text.encode("utf-8"))


@pytest.mark.parametrize(
    "suffix, partial",
    [
        (".jsonl", '{"path": "half.jpg", "sco'),
        (".csv", "half.jpg,0.12"),
        (".csv", '"quoted\nnewline.jpg'),  # cut right after a newline inside a quoted field
    ],
)
def test_resume_drops_a_truncated_last_line_then_appends(tmp_path, suffix, partial):
    path = tmp_path / f"run{suffix}"
    write(path, ROWS[:3])
    complete_size = path.stat().st_size
    kill_mid_row(path, partial)

    assert read_done_paths(path) == {r["path"] for r in ROWS[:3]}
    assert path.stat().st_size > complete_size  # reading does not change the file

    write(path, ROWS[3:], resume=True)
    assert read_result_rows(path) == ROWS
    assert path.read_bytes().count(b"half.jpg") == 0 and b"newline.jpg" not in path.read_bytes()


def test_repair_reports_bytes_removed_and_keeps_complete_files(tmp_path):
    path = tmp_path / "r.jsonl"
    write(path, ROWS[:2])
    assert repair_truncated_tail(path) == 0
    kill_mid_row(path, '{"pa')
    assert repair_truncated_tail(path) == 4
    assert read_result_rows(path) == ROWS[:2]


def test_resume_of_a_file_killed_inside_its_csv_header(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("path,sc", encoding="utf-8")
    write(path, ROWS[:1], resume=True)
    assert read_result_rows(path) == ROWS[:1]


def test_resume_without_a_file_starts_one(tmp_path):
    path = tmp_path / "new" / "r.csv"
    assert read_done_paths(path) == set()
    write(path, ROWS[:1], resume=True)
    assert read_result_rows(path) == ROWS[:1]


def test_fresh_run_overwrites(tmp_path):
    path = tmp_path / "r.jsonl"
    write(path, ROWS)
    write(path, ROWS[:1])
    assert read_result_rows(path) == ROWS[:1]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_with_other_columns_is_refused_with_location(tmp_path, suffix):
    path = tmp_path / f"r{suffix}"
    write(path, ROWS[:1])
    with pytest.raises(ResultFileError, match=rf"r\{suffix}:1: .*differ from this run's columns"):
        open_writer(path, columns=("path", "score", "error"), resume=True)


def test_malformed_rows_name_file_and_line(tmp_path):
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"path": "a", "score": 1, "error": null}\n{oops}\n', encoding="utf-8")
    with pytest.raises(ResultFileError, match=r"bad\.jsonl:2: not valid JSON"):
        read_done_paths(jsonl)
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("path,score,error\na.jpg,high,\n", encoding="utf-8")
    with pytest.raises(ResultFileError, match=r"bad\.csv: row 2: score 'high' is not a number"):
        read_result_rows(csv_file)
    short = tmp_path / "short.csv"
    short.write_text("path,score,error\na.jpg\n", encoding="utf-8")
    with pytest.raises(ResultFileError, match=r"short\.csv: row 2 has 1 fields, the header has 3"):
        read_result_rows(short)


def test_table_writer_aligns_columns():
    stream = io.StringIO()
    table = TableWriter(COLUMNS, stream=stream)
    table.write_rows([
        {"path": "a.jpg", "score": 0.123456, "error": None, "scene": "portrait"},
        {"path": "long/name.png", "score": None, "error": "not an image", "scene": None},
    ])
    table.write_rows([{"path": "b.jpg", "score": 12.5, "error": None, "scene": "x"}])
    assert stream.getvalue().split("\n") == [
        # The files' column order; widths grow with the longest value seen so far (12.5000 widens score).
        "path            score  error         scene",
        "a.jpg          0.1235                portrait",
        "long/name.png  failed  not an image",
        "b.jpg          12.5000                x",
        "",
    ]


def test_run_summary_counts_by_reason():
    summary = RunSummary()
    summary.record_rows(ROWS)
    summary.record("over pixel limit (400 px > 100)")
    summary.record("over pixel limit (900 px > 100)")
    summary.n_skipped = 7
    assert (summary.n_scored, summary.n_failed) == (3, 4)
    assert summary.format() == (
        "scored 3, failed 4 (over pixel limit: 2, file not found: 1, not an image: 1), skipped 7 already done"
    )
    assert summary.as_dict()["failures_by_reason"] == {"not an image": 1, "file not found": 1, "over pixel limit": 2}
