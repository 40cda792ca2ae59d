"""Write scoring results as they come: CSV, JSON Lines, or an aligned table on stdout; resume a run.

A result row is a mapping with the columns ``path``, ``score`` (None when the image failed) and
``error`` (None when it was scored), plus any extra columns the caller declared (e.g. ``scene``).
File writers append each batch and ``flush()`` pushes it to disk (``os.fsync``), so a killed run loses
at most the batch in flight and possibly leaves one incomplete last line, which resume repairs.
Format details are in docs/inference.md, "Output".
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..imaging.decode import error_reason

RESULT_COLUMNS: tuple[str, ...] = ("path", "score", "error")
WRITER_FORMATS = {".csv": "csv", ".jsonl": "jsonl"}

# Paths are written back exactly as the file system gave them: undecodable bytes in a file name
# (os.fsdecode's surrogate escapes) survive the round trip instead of failing the write.
_ENCODING = "utf-8"
_ENCODING_ERRORS = "surrogateescape"

Row = Mapping[str, Any]


class ResultFileError(ValueError):
    """A result file that cannot be read or appended to; the message names the file and line."""


class ResultWriter:
    """Common behaviour: fixed columns, row validation, context manager. Subclasses write rows."""

    def __init__(self, columns: Sequence[str]):
        self.columns = _validate_columns(columns)

    def write_rows(self, rows: Iterable[Row]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _stored(self, row: Row) -> list[Any]:
        """The row's values in column order, the score with the digits fp32 holds (``stored_scores``)."""
        values = self._ordered(row)
        if "score" in self.columns:
            at = self.columns.index("score")
            if isinstance(values[at], float):
                values[at] = stored_scores([values[at]])[0]
        return values

    def _ordered(self, row: Row) -> list[Any]:
        """The row's values in column order; missing columns are None, unknown ones are an error."""
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(
                f"row for {row.get('path')!r} has columns {sorted(unknown)} that the writer was not "
                f"opened with (columns: {list(self.columns)})"
            )
        return [row.get(name) for name in self.columns]


class _FileWriter(ResultWriter):
    def __init__(self, path: Path, columns: Sequence[str], *, append: bool):
        super().__init__(columns)
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        starts_empty = not append or not path.exists() or path.stat().st_size == 0
        self._file: TextIO = open(  # noqa: SIM115 — closed by close()
            path, "a" if append else "w", encoding=_ENCODING, errors=_ENCODING_ERRORS, newline=""
        )
        if starts_empty:
            self._write_preamble()
            self.flush()

    def _write_preamble(self) -> None:
        """Written once at the start of a new file (the CSV header)."""

    def flush(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()


class CsvResultWriter(_FileWriter):
    """Comma-separated, one header line, ``\\n`` line ends; None is an empty field, floats use ``repr``
    (shortest text that reads back to the same float)."""

    def __init__(self, path: Path, columns: Sequence[str], *, append: bool = False):
        super().__init__(path, columns, append=append)
        self._csv = csv.writer(self._file, lineterminator="\n")

    def _write_preamble(self) -> None:
        csv.writer(self._file, lineterminator="\n").writerow(self.columns)

    def write_rows(self, rows: Iterable[Row]) -> None:
        self._csv.writerows([_csv_cell(v) for v in self._stored(row)] for row in rows)


class JsonlResultWriter(_FileWriter):
    """One JSON object per line, keys in column order, None as ``null``, non-ASCII kept as is."""

    def write_rows(self, rows: Iterable[Row]) -> None:
        lines = [
            json.dumps(dict(zip(self.columns, self._stored(row))), ensure_ascii=False) + "\n" for row in rows
        ]
        self._file.write("".join(lines))


class TableWriter(ResultWriter):
    """Human-readable table on a text stream (stdout by default), printed batch by batch.

    Columns in the files' order (``path, score, error`` then the extra columns). Scores are shown with
    ``score_decimals`` decimals: 4 by default, 3 for a bf16 model (``table_decimals``); the files keep every
    digit the score's dtype holds. Widths grow to the longest value seen so far, so rows stay aligned
    unless a later value is longer than all before it.
    """

    def __init__(self, columns: Sequence[str] = RESULT_COLUMNS, stream: TextIO | None = None, *,
                 score_decimals: int = 4):
        super().__init__(columns)
        self.stream = stream if stream is not None else sys.stdout
        self.score_decimals = score_decimals
        self._display = list(self.columns)
        self._widths = {name: len(name) for name in self._display}
        self._header_written = False

    def write_rows(self, rows: Iterable[Row]) -> None:
        cells = [self._cells(row) for row in rows]
        for row_cells in cells:
            for name, text in row_cells.items():
                self._widths[name] = max(self._widths[name], len(text))
        lines = [] if self._header_written else [self._line({n: n for n in self._display})]
        self._header_written = True
        lines.extend(self._line(row_cells) for row_cells in cells)
        self.stream.write("".join(line + "\n" for line in lines))

    def flush(self) -> None:
        self.stream.flush()

    def _cells(self, row: Row) -> dict[str, str]:
        values = dict(zip(self.columns, self._ordered(row)))
        score = values.get("score")
        cells = {name: "" if values.get(name) is None else str(values[name]) for name in self._display}
        cells["score"] = "failed" if score is None else f"{float(score):.{self.score_decimals}f}"
        return cells

    def _line(self, cells: Mapping[str, str]) -> str:
        last = self._display[-1]
        parts = [
            cells[name].rjust(self._widths[name]) if name == "score" else cells[name].ljust(self._widths[name])
            for name in self._display[:-1]
        ]
        return "  ".join([*parts, cells[last]]).rstrip()


def table_decimals(precision: str) -> int:
    """Decimals a printed score carries: 3 under bf16 (bf16 image features keep 8 bits of mantissa; scores of
    bf16 and fp32 runs differ in the third decimal), 4 otherwise."""
    return 3 if precision == "bf16" else 4


def open_writer(
    path: str | os.PathLike | None,
    *,
    columns: Sequence[str] = RESULT_COLUMNS,
    resume: bool = False,
    score_decimals: int = 4,
) -> ResultWriter:
    """A writer for ``path`` chosen by extension (``.csv`` or ``.jsonl``); ``None`` prints a table (scores
    with ``score_decimals`` decimals).

    ``resume=False`` starts the file afresh (an existing file is overwritten). ``resume=True`` keeps
    the rows already there: an incomplete last line from a killed run is cut off, the existing columns
    must equal ``columns``, and new rows are appended. Use :func:`read_done_paths` to skip done inputs.
    """
    if path is None:
        return TableWriter(columns, score_decimals=score_decimals)
    path = Path(path)
    kind = _format_of(path)
    if resume and path.exists():
        repair_truncated_tail(path)
        _check_existing_columns(path, kind, _validate_columns(columns))
    writer_class = CsvResultWriter if kind == "csv" else JsonlResultWriter
    return writer_class(path, columns, append=resume)


def read_result_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete row of a CSV or JSONL result file (an incomplete last line is ignored, the file
    is not changed). CSV cells come back as strings, except ``score`` (float) and empty cells (None)."""
    path = Path(path)
    kind = _format_of(path)
    text = _complete_text(path, kind)
    if kind == "csv":
        return _parse_csv_rows(path, text)
    return _parse_jsonl_rows(path, text)


def read_done_paths(path: str | os.PathLike, *, include_failed: bool = True) -> set[str]:
    """Paths already recorded in a result file, for resuming; an absent file gives an empty set.

    With ``include_failed=False`` only the paths that got a score count as done, so a resumed run
    retries the failures (the file then holds an old error row and a new row for those paths).
    """
    if not Path(path).exists():
        return set()
    return {
        str(row["path"])
        for row in read_result_rows(path)
        if include_failed or row.get("score") is not None
    }


def repair_truncated_tail(path: str | os.PathLike) -> int:
    """Cut a result file back to its last complete row; returns the number of bytes removed."""
    path = Path(path)
    data = path.read_bytes()
    keep = _complete_prefix_length(data, _format_of(path))
    if keep < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
    return len(data) - keep


@dataclass
class RunSummary:
    """Counts for the end-of-run report; failures are grouped by reason (the error text before
    its parenthesised detail, e.g. ``"over pixel limit"``)."""

    n_scored: int = 0
    n_failed: int = 0
    n_skipped: int = 0  # inputs already in the output file of a resumed run
    failures_by_reason: Counter = field(default_factory=Counter)

    def record(self, error: str | None) -> None:
        """Count one finished input: scored when ``error`` is None, failed otherwise."""
        if error is None:
            self.n_scored += 1
        else:
            self.n_failed += 1
            self.failures_by_reason[error_reason(error)] += 1

    def record_rows(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.record(row.get("error"))

    def format(self) -> str:
        """E.g. ``"scored 98, failed 2 (corrupt or truncated: 1, file not found: 1)"``."""
        text = f"scored {self.n_scored}, failed {self.n_failed}"
        if self.failures_by_reason:
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.failures_by_reason.items(), key=_by_count))
            text += f" ({reasons})"
        if self.n_skipped:
            text += f", skipped {self.n_skipped} already done"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_scored": self.n_scored,
            "n_failed": self.n_failed,
            "n_skipped": self.n_skipped,
            "failures_by_reason": dict(self.failures_by_reason),
        }


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _validate_columns(columns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(columns, str):
        raise TypeError("columns must be a sequence of column names, not one string")
    columns = tuple(columns)
    missing = [c for c in RESULT_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"columns {list(columns)} lack the required result columns {missing}")
    if len(set(columns)) != len(columns):
        raise ValueError(f"columns {list(columns)} name a column twice")
    return columns


def _format_of(path: Path) -> str:
    kind = WRITER_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(
            f"cannot tell the result format of {str(path)!r} from its extension; "
            f"use one of {sorted(WRITER_FORMATS)} (or no output file for a table on stdout)"
        )
    return kind


def stored_scores(scores: Iterable[float]) -> list[float]:
    """Scores as the shortest decimals that read back to the same fp32 values (0.87769985, not float64's
    0.8776998519897461). Score heads compute in fp32 (bf16 runs too), so further digits are noise; files
    and the HTTP service carry these (docs/inference.md)."""
    return [float(str(np.float32(value))) for value in scores]


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def _complete_prefix_length(data: bytes, kind: str) -> int:
    """Length of the longest prefix of ``data`` made of whole lines (whole CSV records).

    Every row ends in ``\\n``. In JSONL a newline only ever ends a row (JSON escapes it inside
    strings). In CSV a quoted field may hold a newline; a newline ends a record only when an even
    number of ``"`` precede it (escaped quotes come in pairs, so the parity still tells).
    """
    end = data.rfind(b"\n")
    if kind == "csv":
        while end >= 0 and data.count(b'"', 0, end) % 2 == 1:
            end = data.rfind(b"\n", 0, end)
    return end + 1


def _complete_text(path: Path, kind: str) -> str:
    data = path.read_bytes()
    return data[: _complete_prefix_length(data, kind)].decode(_ENCODING, errors=_ENCODING_ERRORS)


def _parse_csv_rows(path: Path, text: str) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return []
    if "path" not in header:
        raise ResultFileError(f"{path}:1: CSV header {header} has no 'path' column")
    rows = []
    for row_number, cells in enumerate(reader, start=2):
        if len(cells) != len(header):
            raise ResultFileError(
                f"{path}: row {row_number} has {len(cells)} fields, the header has {len(header)}"
            )
        row: dict[str, Any] = {name: (cell if cell != "" else None) for name, cell in zip(header, cells)}
        if row.get("score") is not None:
            row["score"] = _parse_score(path, row_number, row["score"])
        rows.append(row)
    return rows


def _parse_score(path: Path, row_number: int, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ResultFileError(f"{path}: row {row_number}: score {text!r} is not a number") from None


def _parse_jsonl_rows(path: Path, text: str) -> list[dict[str, Any]]:
    rows = []
    # split on "\n" only: str.splitlines would also split on U+2028 etc., which JSON leaves unescaped
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ResultFileError(f"{path}:{line_number}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict) or "path" not in row:
            raise ResultFileError(f"{path}:{line_number}: expected a JSON object with a 'path' key")
        rows.append(row)
    return rows


def _check_existing_columns(path: Path, kind: str, columns: tuple[str, ...]) -> None:
    """Appending rows of other columns would corrupt the file: refuse, naming the mismatch."""
    text = _complete_text(path, kind)
    if not text:
        return
    first_line = text.split("\n", 1)[0]
    if kind == "csv":
        found = tuple(next(csv.reader([first_line])))
        where = f"{path}:1: header"
    else:
        try:
            found = tuple(json.loads(first_line))
        except (json.JSONDecodeError, TypeError):
            raise ResultFileError(f"{path}:1: not a JSON object; cannot resume this file") from None
        where = f"{path}:1: row keys"
    if found != columns:
        raise ResultFileError(f"{where} {list(found)} differ from this run's columns {list(columns)}; resume "
                              f"needs the same columns (or write to a new file)")

