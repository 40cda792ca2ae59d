"""Results of an evaluation protocol: one row per split, a summary per setting, Markdown and CSV.

A *setting* is everything about a split except its seed: (dataset, mode, parameters). Rows of the
same setting are summarised together -- median (what both papers report), mean and sample standard
deviation (ddof=1) over the splits. A split whose metric is nan is left out of that metric's
summary and the summary's notes say so, so an undefined split never silently vanishes.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from perceptiq.evaluation.metrics import METRIC_NAMES

#: Summary statistics over the splits of one setting, in report order.
SUMMARY_STATISTICS: tuple[str, ...] = ("median", "mean", "std")

#: Column titles for the metric keys in the Markdown table.
METRIC_TITLES: Mapping[str, str] = {
    "srcc": "SRCC",
    "plcc": "PLCC",
    "plcc_logistic4": "PLCC (logistic-4)",
    "plcc_logistic5": "PLCC (logistic-5)",
    "krcc": "KRCC",
    "rmse": "RMSE",
}


@dataclass(frozen=True)
class SplitScore:
    """Metrics of one model on the test part of one split."""

    dataset: str
    mode: str
    seed: int | None
    params: Mapping[str, Any]
    n_train: int
    n_test: int
    metrics: Mapping[str, float]
    notes: tuple[str, ...] = ()

    @property
    def setting(self) -> tuple[str, str, str]:
        """(dataset, mode, parameters as canonical JSON): the group this row is summarised in."""
        return (self.dataset, self.mode, json.dumps(dict(self.params), sort_keys=True))


@dataclass(frozen=True)
class SettingSummary:
    """Median, mean and std of each metric over the splits of one setting."""

    dataset: str
    mode: str
    params: Mapping[str, Any]
    n_splits: int
    statistics: Mapping[str, Mapping[str, float]]  # statistic name -> metric name -> value
    notes: tuple[str, ...] = ()

    @property
    def setting(self) -> tuple[str, str, str]:
        """Same key as :attr:`SplitScore.setting`."""
        return (self.dataset, self.mode, json.dumps(dict(self.params), sort_keys=True))

    @property
    def median(self) -> Mapping[str, float]:
        return self.statistics["median"]

    @property
    def mean(self) -> Mapping[str, float]:
        return self.statistics["mean"]

    @property
    def std(self) -> Mapping[str, float]:
        return self.statistics["std"]


def _summarise(rows: Sequence[SplitScore]) -> SettingSummary:
    statistics: dict[str, dict[str, float]] = {name: {} for name in SUMMARY_STATISTICS}
    notes = []
    for metric in METRIC_NAMES:
        values = np.array([row.metrics.get(metric, math.nan) for row in rows], dtype=np.float64)
        defined = values[np.isfinite(values)]
        if defined.size < values.size:
            notes.append(f"{metric}: {values.size - defined.size} of {values.size} splits undefined, left out")
        statistics["median"][metric] = float(np.median(defined)) if defined.size else math.nan
        statistics["mean"][metric] = float(np.mean(defined)) if defined.size else math.nan
        statistics["std"][metric] = float(np.std(defined, ddof=1)) if defined.size > 1 else math.nan
    first = rows[0]
    return SettingSummary(
        dataset=first.dataset,
        mode=first.mode,
        params=dict(first.params),
        n_splits=len(rows),
        statistics=statistics,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class ProtocolResult:
    """Per-split scores of one protocol run, with summaries per setting."""

    rows: tuple[SplitScore, ...]
    summaries: tuple[SettingSummary, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not self.rows:
            raise ValueError("a protocol result needs at least one split")
        groups: dict[tuple[str, str, str], list[SplitScore]] = {}
        for row in self.rows:
            groups.setdefault(row.setting, []).append(row)
        object.__setattr__(self, "summaries", tuple(_summarise(group) for group in groups.values()))

    def _single_summary(self) -> SettingSummary:
        if len(self.summaries) != 1:
            settings = [f"{s.dataset}/{s.mode}" for s in self.summaries]
            raise ValueError(f"result holds {len(self.summaries)} settings ({settings}); use .summaries")
        return self.summaries[0]

    @property
    def median(self) -> Mapping[str, float]:
        """Median over splits of each metric (only when all rows share one setting)."""
        return self._single_summary().median

    @property
    def mean(self) -> Mapping[str, float]:
        return self._single_summary().mean

    @property
    def std(self) -> Mapping[str, float]:
        return self._single_summary().std

    def to_markdown(self, digits: int = 4) -> str:
        return render_markdown(self, digits=digits)

    def to_csv(self) -> str:
        return render_csv(self)

    def write(self, path: str | Path) -> None:
        """Write as CSV (``.csv``) or Markdown (``.md``), chosen by the file suffix."""
        path = Path(path)
        if path.suffix == ".csv":
            text = self.to_csv()
        elif path.suffix == ".md":
            text = self.to_markdown()
        else:
            raise ValueError(f"{path}: unknown report format {path.suffix!r}; use .csv or .md")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")


# ----------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items())


def _number(value: float, digits: int) -> str:
    return "nan" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(result: ProtocolResult, digits: int = 4) -> str:
    """A Markdown table: per-split rows, then median (bold), mean and std rows for each setting of more than
    one split (a single split's row is its own result; the CSV keeps the summary rows for every setting)."""
    header = ["dataset", "mode", "params", "seed", "n_train", "n_test", *(METRIC_TITLES[m] for m in METRIC_NAMES), "notes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]

    def add(cells: list[str]) -> None:
        lines.append("| " + " | ".join(_markdown_cell(cell) for cell in cells) + " |")

    for summary in result.summaries:
        for row in (row for row in result.rows if row.setting == summary.setting):
            add([row.dataset, row.mode, _params_text(row.params), str(row.seed), str(row.n_train), str(row.n_test),
                 *(_number(row.metrics.get(m, math.nan), digits) for m in METRIC_NAMES), "; ".join(row.notes)])
        if summary.n_splits == 1:   # median, mean and std of one row would only repeat it
            continue
        for statistic in SUMMARY_STATISTICS:
            values = [_number(summary.statistics[statistic][m], digits) for m in METRIC_NAMES]
            label = f"{statistic} of {summary.n_splits}"
            if statistic == "median":
                label, values = f"**{label}**", [f"**{v}**" for v in values]
            notes = "; ".join(summary.notes) if statistic == "median" else ""
            add([summary.dataset, summary.mode, _params_text(summary.params), label, "", "", *values, notes])
    return "\n".join(lines) + "\n"


CSV_COLUMNS: tuple[str, ...] = (
    "row", "dataset", "mode", "params", "seed", "n_train", "n_test", "n_splits", *METRIC_NAMES, "notes",
)


def render_csv(result: ProtocolResult) -> str:
    """CSV text: ``row`` is ``split`` for a split and median/mean/std for a summary; params as JSON."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({
            "row": "split", "dataset": row.dataset, "mode": row.mode, "params": json.dumps(dict(row.params), sort_keys=True),
            "seed": "" if row.seed is None else row.seed, "n_train": row.n_train, "n_test": row.n_test, "n_splits": 1,
            **{m: repr(float(row.metrics.get(m, math.nan))) for m in METRIC_NAMES}, "notes": "; ".join(row.notes),
        })
    for summary in result.summaries:
        for statistic in SUMMARY_STATISTICS:
            writer.writerow({
                "row": statistic, "dataset": summary.dataset, "mode": summary.mode,
                "params": json.dumps(dict(summary.params), sort_keys=True), "seed": "", "n_train": "", "n_test": "",
                "n_splits": summary.n_splits, **{m: repr(float(summary.statistics[statistic][m])) for m in METRIC_NAMES},
                "notes": "; ".join(summary.notes),
            })
    return buffer.getvalue()
