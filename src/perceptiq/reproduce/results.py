"""Reading a finished run folder: the summaries of ``results.csv``, the per-image ``predictions.csv`` of
each unit, the per-epoch logs, and the recipe it ran."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

ANY = "*"   # a parameter value that matches whatever the run used (e.g. Table 2's per-dataset ratio)
#: Setting parameters that tell settings of one run apart: a result row carrying one of these matches only a
#: query that names it (e.g. Table 6's forced-expert rows never stand in for the plain model's).
DISTINGUISHING = ("k", "fraction", "force_expert", "train", "test_prompt")


@dataclass(frozen=True)
class Summary:
    """The median row of one setting in ``results.csv``."""

    dataset: str
    mode: str
    params: Mapping[str, Any]
    n_splits: int
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class Found:
    """A value of ours and where it came from (for the report)."""

    value: float | None
    where: str
    n_splits: int | None = None


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


@lru_cache(maxsize=256)
def _summaries(path: str, mtime: float) -> tuple[Summary, ...]:
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("row") != "median":
                continue
            metrics = {k: _float(v) for k, v in row.items()
                       if k not in ("row", "dataset", "mode", "params", "seed", "n_train", "n_test", "n_splits", "notes")}
            rows.append(Summary(row["dataset"], row["mode"], json.loads(row["params"] or "{}"),
                                int(row["n_splits"] or 0), metrics))
    return tuple(rows)


class RunResults:
    """One finished run folder (``perceptiq train`` / ``finetune`` / ``meta-train`` output)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)

    @property
    def recipe(self) -> dict:
        path = self.run_dir / "recipe.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def summaries(self) -> tuple[Summary, ...]:
        path = self.run_dir / "results.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the run has no results table")
        return _summaries(str(path), path.stat().st_mtime)

    def find(self, dataset: str, metric: str, **params: Any) -> Found:
        """The median ``metric`` of ``dataset`` for the setting with these ``params`` (a value ``ANY``
        matches any value of that key; a ``DISTINGUISHING`` key the query leaves out must be absent)."""
        for summary in self.summaries():
            if summary.dataset != dataset or any(k in summary.params for k in DISTINGUISHING if k not in params):
                continue
            if all(k in summary.params and (v == ANY or summary.params[k] == v) for k, v in params.items()):
                value = summary.metrics.get(metric)
                setting = ", ".join(f"{k}={summary.params[k]}" for k in sorted(params))
                where = f"{self.run_dir.name}: {dataset}" + (f" ({setting})" if setting else "") + \
                    f", median of {summary.n_splits} split(s)"
                return Found(None if value is None or not math.isfinite(value) else value, where, summary.n_splits)
        setting = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
        return Found(None, f"{self.run_dir.name}: no result for {dataset}" + (f" ({setting})" if setting else ""))

    def split_values(self, dataset: str, metric: str, **params: Any) -> list[float]:
        """``metric`` of every split of the setting (the per-split rows of ``results.csv``)."""
        path = self.run_dir / "results.csv"
        values = []
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                row_params = json.loads(row["params"] or "{}")
                if row.get("row") != "split" or row["dataset"] != dataset:
                    continue
                if any(k in row_params for k in DISTINGUISHING if k not in params):
                    continue
                if all(k in row_params and (v == ANY or row_params[k] == v) for k, v in params.items()):
                    values.append(_float(row[metric]))
        return values

    def unit_dirs(self) -> list[Path]:
        return sorted(p for p in self.run_dir.iterdir() if p.is_dir() and (p / "predictions.csv").is_file()) \
            if self.run_dir.is_dir() else []

    def predictions(self, unit_dir: Path) -> dict[str, tuple[list[float], list[float], list[str]]]:
        """{dataset: (predicted, mos, paths)} of one unit's test images."""
        out: dict[str, tuple[list[float], list[float], list[str]]] = {}
        with open(unit_dir / "predictions.csv", newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                predicted, mos, paths = out.setdefault(row["dataset"], ([], [], []))
                predicted.append(_float(row["predicted"]))
                mos.append(_float(row["mos"]))
                paths.append(row["path"])
        return out

    def training_seconds(self) -> list[float]:
        """Training time of each unit (sum of its epochs' seconds, from ``epochs.jsonl``)."""
        times = []
        for unit in sorted(p for p in self.run_dir.iterdir() if p.is_dir()):
            log = unit / "epochs.jsonl"
            if log.is_file():
                total = 0.0
                for line in log.read_text().splitlines():
                    if line.strip():
                        total += float(json.loads(line).get("seconds", 0.0))
                times.append(total)
        return times
