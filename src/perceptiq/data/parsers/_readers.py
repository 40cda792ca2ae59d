"""Readers for the label-file formats the releases use: MATLAB .mat, Excel .xlsx,
CSV with a header, and whitespace/comma separated text. Each reader reports faults
as DatasetFormatError naming the file (relative to the root where known) and row.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from perceptiq.data.records import DatasetFormatError


def parse_number(value: object, where: str, column: str = "") -> float:
    """``value`` as a finite float, else DatasetFormatError naming ``where`` (file + row)."""
    what = f" column '{column}'" if column else ""
    if isinstance(value, bool) or value is None:
        raise DatasetFormatError(f"{where}{what}: expected a number, found {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{where}{what}: expected a number, found {value!r}") from None
    if not math.isfinite(number):
        raise DatasetFormatError(f"{where}{what}: expected a finite number, found {value!r}")
    return number


def parse_integer(value: object, where: str, column: str = "") -> int:
    number = parse_number(value, where, column)
    if not number.is_integer():
        raise DatasetFormatError(f"{where} column '{column}': expected an integer, found {value!r}")
    return int(number)


def read_mat_variable(path: Path, variable: str, shown_as: str) -> np.ndarray:
    """One variable of a MATLAB .mat file (scipy.io.loadmat), flattened to 1-D.

    Cell arrays of strings come back as an object array of ``str``.
    """
    from scipy.io import loadmat

    try:
        content = loadmat(str(path))
    except Exception as error:  # scipy raises several types for a damaged file
        raise DatasetFormatError(f"{shown_as}: not a readable .mat file ({error})") from error
    if variable not in content:
        present = sorted(k for k in content if not k.startswith("__"))
        raise DatasetFormatError(f"{shown_as}: no variable '{variable}' (variables present: {present})")
    array = np.asarray(content[variable])
    if array.dtype == object:
        return np.array([_mat_cell_to_str(cell) for cell in array.reshape(-1)], dtype=object)
    return array.reshape(-1)


def _mat_cell_to_str(cell: object) -> str:
    # loadmat wraps each cell string in one or more 1-element arrays.
    while isinstance(cell, np.ndarray):
        if cell.size != 1 and cell.dtype.kind not in "US":
            raise ValueError(f"cell holds {cell.size} values, expected one string")
        cell = cell.reshape(-1)[0] if cell.size else ""
    return str(cell)


def read_xlsx_rows(path: Path, shown_as: str, sheet: str | None = None) -> list[tuple[int, tuple]]:
    """All rows of one worksheet (the named one, else the first) as (row number, values)."""
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as error:
        raise DatasetFormatError(f"{shown_as}: not a readable .xlsx file ({error})") from error
    try:
        if sheet is None:
            worksheet = workbook.worksheets[0]
        elif sheet in workbook.sheetnames:
            worksheet = workbook[sheet]
        else:
            raise DatasetFormatError(f"{shown_as}: no sheet '{sheet}' (sheets: {workbook.sheetnames})")
        return [(number, tuple(row)) for number, row in enumerate(worksheet.iter_rows(values_only=True), 1)]
    finally:
        workbook.close()


def find_header_row(
    rows: list[tuple[int, tuple]], required: Sequence[str], shown_as: str
) -> tuple[int, dict[str, int]]:
    """Index (into ``rows``) of the first row holding every ``required`` name, and name -> column.

    Names are compared case-insensitively after stripping spaces at the ends.
    """
    wanted = [r.casefold() for r in required]
    for position, (_number, values) in enumerate(rows):
        cells = {str(v).strip().casefold(): i for i, v in enumerate(values) if v is not None}
        if all(w in cells for w in wanted):
            return position, {r: cells[w] for r, w in zip(required, wanted)}
    raise DatasetFormatError(f"{shown_as}: no header row with the columns {list(required)}")


def read_csv_rows(path: Path, required: Sequence[str], shown_as: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row of a CSV with a header row.

    Raises DatasetFormatError when a required column is missing or a row has fewer
    fields than the header. Column names are matched exactly as the release writes them.
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise DatasetFormatError(f"{shown_as}: empty file, expected a header row")
        header = [h.strip() for h in header]
        missing = [r for r in required if r not in header]
        if missing:
            raise DatasetFormatError(f"{shown_as} row 1: header lacks columns {missing} (found {header})")
        for fields in reader:
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) < len(header):
                raise DatasetFormatError(
                    f"{shown_as} row {reader.line_num}: {len(fields)} fields, header has {len(header)}"
                )
            yield reader.line_num, dict(zip(header, (f.strip() for f in fields)))


def read_text_rows(path: Path, shown_as: str, separator: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for each non-blank line; ``separator`` None splits on whitespace."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            parts = line.strip().split(separator) if separator else line.split()
            yield number, [p.strip() for p in parts]


def shown(root_path: Path, path: Path) -> str:
    """``path`` relative to the dataset root, for messages."""
    try:
        return str(path.relative_to(root_path))
    except ValueError:
        return str(path)
