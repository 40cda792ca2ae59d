"""The reproduce report: for every paper cell the paper's number, ours and the difference (ours - paper),
as Markdown (``report.md``, one table per paper table) and long CSV (``report.csv``, one line per cell),
with the figures (PNG) and a header that says what data, runs and overrides produced it."""
from __future__ import annotations

import csv
import io
import json
import math
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASET_LABELS = {
    "live": "LIVE", "csiq": "CSIQ", "tid2013": "TID2013", "kadid10k": "KADID", "livec": "LIVEC",
    "koniq10k": "KonIQ", "spaq": "SPAQ", "livefb": "LIVEFB", "pipal": "PIPAL", "agiqa3k": "AGIQA3k",
    "aigciqa2023": "AIGC2023", "gfiqa20k": "GFIQA20k", "uwiqa": "UWIQA", "ava": "AVA", "aadb": "AADB",
    "bid": "BID", "exbedde": "exBeDDE", "eciqad": "ECIQAD", "average": "Average",
}
METRIC_LABELS = {"srcc": "SRCC", "plcc": "PLCC", "params_m": "Params (M)", "train_hours": "Time (h)",
                 "epochs": "Epochs", "batch_size": "Batch", "semantic_noise_reduction_percent": "noise reduction (%)"}


def dataset_label(name: str) -> str:
    return DATASET_LABELS.get(name, name)


def column_label(column: dict) -> str:
    """'LIVEFB→KonIQ SRCC', 'LIVEC 50 SRCC', 'PLCC' from a paper column's fields."""
    parts = []
    if "source" in column:
        parts.append(f"{dataset_label(column['source'])}→{dataset_label(column.get('dataset', '?'))}")
    elif "dataset" in column:
        parts.append(dataset_label(column["dataset"]))
    for key in column:
        if key not in ("source", "dataset", "metric"):
            parts.append(str(column[key]))
    if "metric" in column:
        parts.append(METRIC_LABELS.get(column["metric"], column["metric"]))
    return " ".join(parts)


def _decimals(text: str | None) -> int:
    if not text or "." not in text:
        return 0
    return len(text.split(".", 1)[1])


def format_number(value: float | None, like: str | None = None, digits: int = 3) -> str:
    """``value`` with as many decimals as the paper's ``like`` (at least enough to show it is not 0)."""
    if value is None or not math.isfinite(value):
        return "—"
    places = _decimals(like) if like is not None else digits
    if value != 0 and abs(value) < 10 ** -places:
        return f"{value:.2g}"
    return f"{value:.{places}f}"


@dataclass
class Cell:
    column: str
    fields: dict
    paper: float | None = None
    paper_text: str | None = None
    ours: float | None = None
    where: str = ""
    n_splits: int | None = None
    paper_note: str = ""

    @property
    def difference(self) -> float | None:
        if self.paper is None or self.ours is None or not math.isfinite(self.ours):
            return None
        return self.ours - self.paper

    def markdown(self) -> str:
        ours = format_number(self.ours, self.paper_text)
        if self.paper is None:
            return ours
        text = f"{self.paper_text or format_number(self.paper)} / {ours}"
        difference = self.difference
        if difference is not None:
            text += f" ({'+' if difference >= 0 else '−'}{format_number(abs(difference), self.paper_text)})"
        return text


@dataclass
class Row:
    label: str
    cells: list[Cell]
    notes: str = ""


@dataclass
class Section:
    title: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    paper_source: str = ""
    ours_only: bool = False


@dataclass
class Figure:
    path: Path
    caption: str


@dataclass
class Report:
    target: str
    title: str
    paper: str
    sections: list[Section] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    runs: list[tuple[str, str]] = field(default_factory=list)   # (what ran, folder)
    context: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def cells(self):
        for section in self.sections:
            for row in section.rows:
                for cell in row.cells:
                    yield section, row, cell

    # -- rendering ----------------------------------------------------------------------------------
    def to_markdown(self, out_dir: Path | None = None) -> str:
        lines = [f"# Reproduce {self.target}: {self.paper} {self.title}", ""]
        lines += [f"- {line}" for line in self.context]
        if self.runs:
            lines += ["", "Runs (a folder each, as `perceptiq train` writes it):", ""]
            lines += [f"- `{folder}`: {what}" for what, folder in self.runs]
        lines += ["", "Cells: **paper / ours (ours − paper)**; ours is the median over the run's splits of the "
                  "final epoch's metric. — means no value.", ""]
        for section in self.sections:
            lines += [f"## {section.title}", ""]
            columns: list[str] = []
            for row in section.rows:
                for cell in row.cells:
                    if cell.column not in columns:
                        columns.append(cell.column)
            header = ["row", *columns]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join(["---"] + ["---:"] * len(columns)) + "|")
            for row in section.rows:
                by_column = {cell.column: cell for cell in row.cells}
                values = [by_column[c].markdown() if c in by_column else "" for c in columns]
                lines.append("| " + " | ".join([row.label.replace("|", "\\|"), *values]) + " |")
            wheres = [f"{row.label} / {cell.column}: {cell.where}" for row in section.rows for cell in row.cells
                      if cell.where]
            if wheres:
                lines += ["", "<details><summary>where each of our numbers comes from</summary>", ""]
                lines += [f"- {w}" for w in wheres] + ["", "</details>"]
            for note in section.notes:
                lines += ["", f"Note: {note}"]
            lines.append("")
        for figure in self.figures:
            path = figure.path
            if out_dir is not None:
                try:
                    path = figure.path.relative_to(out_dir)
                except ValueError:
                    pass
            lines += [f"![{figure.caption}]({path.as_posix()})", "", f"*{figure.caption}*", ""]
        if self.notes:
            lines += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        return "\n".join(lines)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["target", "paper", "section", "row", "column", "dataset", "metric", "setting",
                         "paper_value", "ours", "difference", "n_splits", "ours_from"])
        for section, row, cell in self.cells():
            setting = {k: v for k, v in cell.fields.items() if k not in ("dataset", "metric")}
            writer.writerow([self.target, self.paper, section.title, row.label, cell.column, cell.fields.get("dataset", ""),
                             cell.fields.get("metric", ""), json.dumps(setting, sort_keys=True, default=str),
                             "" if cell.paper is None else cell.paper_text or repr(cell.paper),
                             "" if cell.ours is None or not math.isfinite(cell.ours) else repr(float(cell.ours)),
                             "" if cell.difference is None else repr(float(cell.difference)),
                             "" if cell.n_splits is None else cell.n_splits, cell.where])
        return buffer.getvalue()

    def write(self, out_dir: str | Path) -> list[Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        md, table = out_dir / "report.md", out_dir / "report.csv"
        md.write_text(self.to_markdown(out_dir), encoding="utf-8")
        table.write_text(self.to_csv(), encoding="utf-8")
        return [md, table]


def machine_line() -> str:
    """'CPU: <model name> (<n> cores)' from /proc/cpuinfo where it exists."""
    import os

    name = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            name = match.group(1).strip()
    except OSError:
        pass
    return f"machine: {name}, {os.cpu_count()} logical CPUs"


def plain_value(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value
