"""The papers' own numbers, stored as data (``papers/*.yaml``), with the line each was read from.

Every number is a :class:`PaperNumber`: paper, table, row, the cell's fields (``dataset``, ``metric``,
``shots``, ``variant``, ...) and the value as printed. Each row keeps its ``source``: the row exactly as
the paper's text extraction prints it. Two checks keep the data honest:

* :func:`check_row_against_source` (needs nothing but this package): every value of the row occurs in
  its source, in column order, as a whole number token (or as the mangled token the extraction printed,
  given in ``printed``, whose digits must contain the value's digits);
* :func:`check_source_in_paper` (needs the paper texts, e.g. ``../shared/papers``): the source occurs
  in the paper, up to whitespace.

``tests/reproduce/test_paper_numbers.py`` runs the first always and the second when the texts exist.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

PAPER_FILES = {"GRMP-IQA": "grmp-iqa.yaml", "Gamma": "gamma.yaml"}
MISSING = "-"


@dataclass(frozen=True)
class PaperRow:
    """One printed row: its cells' fields and values (``None`` where the paper prints "-")."""

    paper: str
    table: str
    caption: str
    row: str
    source: str
    cells: tuple[Mapping[str, Any], ...]
    texts: tuple[str | None, ...]          # the values as printed ("0.970", "50"), None for "-"
    printed: Mapping[int, str] = field(default_factory=dict)
    notes: str = ""
    columns: tuple[Mapping[str, Any], ...] = ()   # the column part of each cell's fields (for labels)
    fields: Mapping[str, Any] = field(default_factory=dict)   # the row's own fields

    @property
    def values(self) -> tuple[float | None, ...]:
        return tuple(None if t is None else float(t) for t in self.texts)


@dataclass(frozen=True)
class PaperNumber:
    """One number of a paper: ``fields`` say what it is (dataset, metric, shots, variant, ...)."""

    paper: str
    table: str
    row: str
    fields: Mapping[str, Any]
    value: float
    text: str                               # as printed, e.g. "0.970"
    source: str

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


def _parse_column(text: str) -> dict[str, Any]:
    """``"dataset=livec metric=srcc"`` -> ``{"dataset": "livec", "metric": "srcc"}`` (values as YAML)."""
    cell = {}
    for pair in str(text).split():
        if "=" not in pair:
            raise ValueError(f"column '{text}': '{pair}' is not key=value")
        key, value = pair.split("=", 1)
        cell[key] = yaml.safe_load(value)
    return cell


def expand_columns(columns: Any) -> list[dict[str, Any]]:
    """A product mapping (first key outermost) or a list of "key=value ..." strings -> cell fields."""
    if isinstance(columns, Mapping):
        keys = list(columns)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(columns[k] for k in keys))]
    return [_parse_column(c) for c in columns]


def _rows_of(document: Mapping[str, Any]) -> list[PaperRow]:
    paper = document["paper"]
    rows = []
    for table in document["tables"]:
        columns = expand_columns(table["columns"])
        for entry in table["rows"]:
            texts = str(entry["values"]).split()
            if len(texts) != len(columns):
                raise ValueError(f"{paper} Table {table['table']} row '{entry['row']}': {len(texts)} values for "
                                 f"{len(columns)} columns")
            fields = dict(entry.get("fields") or {})
            cells = tuple({**fields, **column} for column in columns)
            rows.append(PaperRow(
                paper=paper, table=str(table["table"]), caption=table.get("caption", ""), row=entry["row"],
                source=entry["source"], cells=cells, texts=tuple(None if t == MISSING else t for t in texts),
                printed={int(k): str(v) for k, v in (entry.get("printed") or {}).items()},
                notes=" ".join(filter(None, [table.get("notes", ""), entry.get("notes", "")])),
                columns=tuple(columns), fields=fields,
            ))
    return rows


@lru_cache(maxsize=None)
def paper_rows(paper: str | None = None) -> tuple[PaperRow, ...]:
    """Every stored row (of one paper: ``"GRMP-IQA"`` or ``"Gamma"``)."""
    names = [paper] if paper else list(PAPER_FILES)
    rows: list[PaperRow] = []
    for name in names:
        if name not in PAPER_FILES:
            raise KeyError(f"unknown paper '{name}'; papers: {', '.join(PAPER_FILES)}")
        text = resources.files("perceptiq.reproduce").joinpath("papers", PAPER_FILES[name]).read_text("utf-8")
        rows += _rows_of(yaml.safe_load(text))
    return tuple(rows)


def paper_text_name(paper: str) -> str:
    """File name of the paper's text (``GRMP-IQA.txt``, ``Gamma.md``) as the YAML records it."""
    text = resources.files("perceptiq.reproduce").joinpath("papers", PAPER_FILES[paper]).read_text("utf-8")
    return yaml.safe_load(text)["text"]


def paper_numbers(paper: str | None = None, table: str | None = None, **fields: Any) -> list[PaperNumber]:
    """The numbers of a paper (and table) whose fields equal every ``fields`` given; "-" cells left out."""
    numbers = []
    for row in paper_rows(paper):
        if table is not None and row.table != str(table):
            continue
        for cell, text in zip(row.cells, row.texts):
            if text is None or any(cell.get(k) != v for k, v in fields.items()):
                continue
            numbers.append(PaperNumber(row.paper, row.table, row.row, dict(cell), float(text), text, row.source))
    return numbers


# -- checks ------------------------------------------------------------------------------------------
def normalise_space(text: str) -> str:
    return " ".join(text.split())


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _find_token(source: str, token: str, start: int, whole: bool) -> int:
    """Position just after ``token`` found at or after ``start``; ``whole``: not inside a longer number."""
    position = start
    while True:
        index = source.find(token, position)
        if index < 0:
            return -1
        before = source[index - 1] if index > 0 else " "
        after = source[index + len(token)] if index + len(token) < len(source) else " "
        if not whole or not (before.isdigit() or before == "." or after.isdigit()
                             or (after == "." and source[index + len(token) + 1:index + len(token) + 2].isdigit())):
            return index + len(token)
        position = index + 1


def check_row_against_source(row: PaperRow) -> list[str]:
    """Problems (empty when none): each value must occur in ``row.source`` in column order, as a whole
    number token, or as its ``printed`` token whose digits contain the value's digits."""
    problems = []
    position = 0
    for index, text in enumerate(row.texts):
        if text is None:
            continue
        where = f"{row.paper} Table {row.table}, row '{row.row}', value {index} ({text})"
        token = row.printed.get(index, text)
        if index in row.printed and _digits(text) not in _digits(token) and _digits(text).lstrip("0") not in _digits(token):
            problems.append(f"{where}: printed token '{token}' does not contain its digits")
            continue
        found = _find_token(row.source, token, position, whole=index not in row.printed)
        if found < 0:
            problems.append(f"{where}: '{token}' not found in its source after position {position}: {row.source!r}")
            continue
        position = found
    extra = [i for i in row.printed if i >= len(row.texts) or row.texts[i] is None]
    if extra:
        problems.append(f"{row.paper} Table {row.table}, row '{row.row}': printed tokens for no value: {extra}")
    return problems


def check_source_in_paper(row: PaperRow, paper_text: str) -> bool:
    """True when the row's source occurs in the paper's text (whitespace-insensitive)."""
    return normalise_space(row.source) in normalise_space(paper_text)


def find_paper_texts(candidates: Iterable[str | Path]) -> dict[str, Path]:
    """{paper: path of its text} for the papers whose text file is in one of ``candidates`` (folders)."""
    found = {}
    for folder in candidates:
        for paper in PAPER_FILES:
            path = Path(folder) / paper_text_name(paper)
            if paper not in found and path.is_file():
                found[paper] = path
    return found
