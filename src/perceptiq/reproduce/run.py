"""``run_target``: make (or read) a target's runs, build its report, write it with the scatter plots."""
from __future__ import annotations

import datetime
import logging
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from .numbers import paper_rows
from .report import Cell, Figure, Report, Row, Section, column_label, machine_line
from .results import Found, RunResults
from .runs import RunContext, RunStep
from .targets import COMPARE, Target, get_target, target_steps

log = logging.getLogger(__name__)


def datasets_for(target: Target, overrides: Sequence[str] = ()) -> list[str]:
    """Every dataset the target reads (its runs' recipes, dependencies included, and its own)."""
    ctx = RunContext(overrides=tuple(overrides))
    names = ctx.datasets_needed(target_steps(target, overrides))
    return names + [n for n in target.extra_datasets if n not in names]


def _resolve(found, fields: dict, ctx: RunContext) -> Found:
    if found is None:
        return Found(None, "no counterpart in our runs")
    if isinstance(found, Found):
        return found
    run, params = found
    dataset, metric = fields.get("dataset"), fields.get("metric")
    if dataset is None or metric is None:
        return Found(None, f"{run.folder}: the cell names no dataset/metric")
    return RunResults(ctx.run_dir(run)).find(dataset, metric, **params)


def compare_sections(target: Target, ctx: RunContext) -> list[Section]:
    """One section per paper table (half) of the target: every stored row, every cell located in our runs."""
    sections: dict[tuple[str, str, str], Section] = {}
    for paper, table in target.tables:
        for row in paper_rows(paper):
            if row.table != table:
                continue
            key = (paper, table, row.caption)
            label = f"{paper} {'Table ' + table if not table.startswith('Fig') else table}: {row.caption}"
            section = sections.setdefault(key, Section(label, []))
            if row.notes and row.notes not in section.notes:
                section.notes.append(row.notes)
            cells = []
            for fields, column, text in zip(row.cells, row.columns, row.texts):
                cell = Cell(column_label(column), dict(fields), None if text is None else float(text), text)
                if fields.get("dataset") != "average" and target.locate is not None:
                    found = _resolve(target.locate(dict(fields), ctx), dict(fields), ctx)
                    cell.ours, cell.where, cell.n_splits = found.value, found.where, found.n_splits
                cells.append(cell)
            for cell in cells:       # the paper's "Average" columns: the mean of our row, as the paper's
                if cell.fields.get("dataset") == "average":
                    others = [c.ours for c in cells if c.fields.get("dataset") != "average"
                              and c.fields.get("metric") == cell.fields.get("metric")]
                    if others and all(v is not None for v in others):
                        cell.ours = statistics.fmean(others)
                        cell.where = f"mean of our {len(others)} {cell.fields.get('metric')} values in this row"
                    else:
                        cell.where = "not every value of the row is available"
            section.rows.append(Row(row.row, cells, row.notes))
    return list(sections.values())


_SEED_TAIL = re.compile(r"(-seed\d+|split\d+)$")


def scatter_for_runs(runs: Sequence[RunStep], ctx: RunContext, out_dir: Path, *, max_panels: int = 24) -> list[Figure]:
    """One PNG per run: predicted score against MOS for each dataset (and setting) of its first split,
    with the fitted logistic curve and SRCC/PLCC in the legend (``evaluation.plots``)."""
    from ..evaluation.plots import ScatterPanel, save_scatter

    figures = []
    for run in runs:
        results = RunResults(ctx.run_dir(run))
        panels, seen = [], set()
        for unit in results.unit_dirs():
            setting = _SEED_TAIL.sub("", unit.name)
            if setting in seen:
                continue
            seen.add(setting)
            for dataset, (predicted, mos, _) in results.predictions(unit).items():
                panels.append(ScatterPanel(f"{dataset} · {unit.name}", predicted, mos))
        if not panels:
            continue
        try:
            path = save_scatter(panels[:max_panels], out_dir / "scatter" / f"{run.folder}.png",
                                title=f"{run.describe()}: predicted score vs MOS (first split)")
        except ImportError as err:
            log.warning("no scatter plots: %s", err)
            return figures
        figures.append(Figure(path, f"{run.folder}: predicted score against MOS per dataset, first split "
                                    f"({min(len(panels), max_panels)} panel(s))"))
    return figures


def run_target(name: str, ctx: RunContext, out_dir: str | Path, *, label: str | None = None) -> Report:
    """Make or read every run ``name`` needs, then write ``report.md``, ``report.csv`` and PNGs to ``out_dir``."""
    out_dir = Path(out_dir)
    if name == COMPARE:
        from .compare import run_compare

        return run_compare(ctx, out_dir, label=label)
    target = get_target(name)
    steps = target_steps(target, ctx.overrides)
    needed = datasets_for(target, ctx.overrides) if ctx.from_dir is None else list(target.extra_datasets)
    absent = [n for n in needed if n not in ctx.roots]
    if absent:
        raise ValueError(f"reproduce {name} needs dataset(s) {', '.join(absent)}: give each with --data NAME=ROOT "
                         f"(`perceptiq reproduce --list` shows what each target reads)")
    for run in steps:
        ctx.ensure(run)
    report = Report(name, target.title, target.paper)
    report.context = [
        f"data: {label}" if label else "data: " + (", ".join(f"{k}={v}" for k, v in ctx.roots.items()) or "none"),
        f"runs: {'read from ' + str(ctx.from_dir) if ctx.from_dir else 'in ' + str(ctx.runs_dir)}",
        "overrides (--set) on every recipe: " + (" ".join(f"`{o}`" for o in ctx.overrides) or "none"),
        f"written {datetime.datetime.now().isoformat(timespec='seconds')}; {machine_line()}",
    ]
    report.runs = [(run.describe(), str(ctx.run_dir(run))) for run in steps]
    if target.notes:
        report.notes.append(target.notes)
    report.sections = compare_sections(target, ctx)
    out_dir.mkdir(parents=True, exist_ok=True)
    if target.figure is not None:
        target.figure(ctx, out_dir, report)
    if target.scatter:
        report.figures += scatter_for_runs(target.steps, ctx, out_dir)
    report.write(out_dir)
    return report


def summary_line(report: Report) -> str:
    cells = [c for _, _, c in report.cells() if c.paper is not None]
    with_ours = [c for c in cells if c.difference is not None]
    if not cells:
        return f"{report.target}: {sum(1 for _ in report.cells())} value(s) of ours, {len(report.figures)} figure(s)"
    mean_abs = statistics.fmean(abs(c.difference) for c in with_ours) if with_ours else math.nan
    return (f"{report.target}: {len(with_ours)} of {len(cells)} paper cells have ours; mean |ours - paper| "
            f"{mean_abs:.3f}; {len(report.figures)} figure(s)")
