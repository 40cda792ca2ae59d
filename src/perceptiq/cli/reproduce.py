"""``perceptiq reproduce``: a table or figure of GRMP-IQA or Gamma, the paper's numbers beside ours.

The work is done by ``perceptiq.reproduce``; this module parses flags, checks the output folder before any
work, and prints the summary.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import (Device, Missing, check_output_folder, data_option, device_option, fail, missing_option,
                     output_option, overwrite_option, parse_data, progress_option, set_option)
from .train import configure_logging


class TargetName(str):
    """A reproduce target's name (``perceptiq reproduce --list``)."""


TargetName.__name__ = "name"   # help shows "TARGET <name>", not "<str>"


def _listing() -> str:
    from ..reproduce.run import datasets_for
    from ..reproduce.targets import TARGETS

    lines = ["Reproduce targets (perceptiq reproduce TARGET --data NAME=ROOT ...):", ""]
    for target in TARGETS:
        lines.append(f"{target.name:15s} {target.paper} {target.title}")
        lines.append(f"{'':15s} datasets: {', '.join(datasets_for(target)) or 'none'}")
    lines += [f"{'compare':15s} zero-shot, GRMP-IQA few-shot (50/100/200) and Gamma (task-specific, mixed) on the same",
              f"{'':15s} datasets and splits: every dataset given with --data (at least one)"]
    return "\n".join(lines)


def reproduce_command(
    target: Optional[TargetName] = typer.Argument(None, metavar="TARGET", show_default=False, parser=TargetName,
                                                  help="A table or figure (grmp-table1 .. gamma-fig5b) or "
                                                       "compare; --list shows them all."),
    list_: bool = typer.Option(False, "--list/--no-list", help="List the targets and the datasets each reads."),
    data: List[str] = data_option("NAME=ROOT for each dataset the target reads (repeatable)."),
    from_: Optional[Path] = typer.Option(None, "--from", metavar="PATH",
                                         help="Read finished run folders from PATH (e.g. runs/, as `perceptiq "
                                              "train` writes them) and train nothing."),
    runs: Path = typer.Option(Path("runs"), "--runs", metavar="PATH",
                              help="Folder of run folders: finished runs of the same recipe are reused, missing "
                                   "ones are trained there."),
    output: Optional[Path] = output_option("Report folder: report.md, report.csv and PNGs "
                                           "(default reports/<TARGET>)."),
    overwrite: bool = overwrite_option(),
    set_: List[str] = set_option(),
    label: Optional[str] = typer.Option(None, "--label", metavar="TEXT",
                                        help="What the data is, for the report's header (default: the "
                                             "--data roots)."),
    rival: Optional[str] = typer.Option(None, "--rival", metavar="NAME|CHECKPOINT",
                                        help="grmp-fig5 (gMAD): the model GRMP-IQA competes with (default "
                                             "zero-shot, on the recipe's backbone and weights)."),
    device: Device = device_option(),
    max_runs: Optional[int] = typer.Option(None, "--max-runs", metavar="N", min=1,
                                           help="Run only the first N train/test units of each recipe."),
    missing: Missing = missing_option(),
    progress: bool = progress_option(),
) -> None:
    """Reproduce a table or figure of GRMP-IQA or Gamma: runs the recipes (or reads finished runs) and
    writes a report with the paper's number beside ours in every cell."""
    if list_:
        typer.echo(_listing())
        return
    if not target:
        fail("give a TARGET (perceptiq reproduce --list shows them)")
    from ..reproduce.targets import COMPARE, get_target

    if target != COMPARE:
        try:
            get_target(target)
        except KeyError as err:
            fail(str(err).strip('"'))
    target = str(target)
    out = output or Path("reports") / target
    check_output_folder(out, overwrite=overwrite)
    if from_ is not None and not from_.is_dir():
        fail(f"--from {from_}: no such folder")
    roots = parse_data(data)
    configure_logging()
    from ..inference.precision import resolve_device
    from ..reproduce.run import run_target, summary_line
    from ..reproduce.runs import RunContext

    ctx = RunContext(roots=roots, runs_dir=runs, from_dir=from_, overrides=tuple(set_),
                     device=resolve_device(device.value), progress=progress, missing=missing.value,
                     max_runs=max_runs, options={"rival": rival} if rival else {})
    try:
        report = run_target(target, ctx, out, label=label)
    except (ValueError, FileNotFoundError, KeyError, TypeError) as err:
        fail(str(err).strip('"'))
    typer.echo(summary_line(report))
    typer.echo(f"wrote {out / 'report.md'}, {out / 'report.csv'}" +
               (f" and {len(report.figures)} PNG(s)" if report.figures else ""))
