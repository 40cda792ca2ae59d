"""``perceptiq reproduce compare``: zero-shot, GRMP-IQA few-shot (50/100/200 images) and Gamma
(task-specific and mixed) on the same datasets and the same splits, in one table -- the side-by-side
neither paper gives.

Same splits: every method runs with ``protocol.split`` = ``mode: auto`` (by reference image for datasets
with synthetic distortions, random otherwise; GRMP-IQA's protocol), 80/20, the recipes' number of splits
and base seed. A split depends only on (dataset, mode, seed, images), so split k's test part is the same
for every method; the k-shot training sets are drawn from split k's 80 % part, Gamma trains on all of it.
The zero-shot model scores split k's test part with no training.

Datasets: every one given with ``--data`` except TID2013 and KADID-10k, which GRMP-IQA's meta
pre-training reads whole (a model that has seen a test part is not compared on it).
"""
from __future__ import annotations

import datetime
from pathlib import Path

from .report import Cell, Report, Row, Section, dataset_label, machine_line
from .results import RunResults
from .runs import RunContext, RunStep, base_recipe, step, with_dependencies

META_DATASETS = ("tid2013", "kadid10k")
UNLABELLED = ("waterloo",)
SAME_SPLITS = ("protocol.split.mode=auto", "protocol.split.train_fraction=0.8")


def compare_datasets(ctx: RunContext) -> list[str]:
    names = [n for n in ctx.roots if n not in META_DATASETS + UNLABELLED]
    if not names:
        raise ValueError("compare needs at least one labelled dataset besides tid2013/kadid10k (GRMP-IQA's "
                         "meta pre-training sets): give it with --data NAME=ROOT")
    return names


def compare_steps(datasets: list[str]) -> dict[str, RunStep]:
    chosen = f"protocol.datasets=[{', '.join(datasets)}]"
    return {"grmp": step("grmp-fewshot", None, chosen, *SAME_SPLITS, name="compare-grmp-fewshot"),
            "gamma-t": step("gamma-task", None, chosen, *SAME_SPLITS, name="compare-gamma-task"),
            "gamma": step("gamma-mixed", None, chosen, *SAME_SPLITS, name="compare-gamma-mixed")}


def zero_shot_results(ctx: RunContext, datasets: list[str], reference: RunStep, out: Path) -> Path:
    """The zero-shot model (five level prompts) on the test part of every split the ``reference`` run
    used (its ``splits.json``), on the reference recipe's backbone and weights; written like a run to
    ``out`` (inside the report folder: nothing is written to the runs folder, which ``--from`` reads)."""
    import json

    from ..data.splits import load_splits
    from ..evaluation.protocols import evaluate_on_splits
    from ..evaluation.report import ProtocolResult
    from ..inference import load_model

    recipe = ctx.recipe(reference)
    model = recipe["model"]
    assessor = load_model("zero-shot", backbone=model.get("backbone"), weights=model.get("weights"),
                          device=str(ctx.device), precision="fp32")
    splits = load_splits(ctx.run_dir(reference) / "splits.json")
    loaded = ctx.datasets(datasets)
    rows = []
    for name in datasets:
        samples = loaded[name].samples
        mine = [s for s in splits if s.dataset == name]
        result = evaluate_on_splits(lambda items: assessor.score([str(s.path) for s in items]), samples, mine,
                                    predict_once=True)
        rows += result.rows
    out.mkdir(parents=True, exist_ok=True)
    result = ProtocolResult(rows=tuple(rows))
    result.write(out / "results.csv")
    result.write(out / "results.md")
    (out / "recipe.json").write_text(json.dumps({"name": "zero-shot", "model": {**model, "name": "zero-shot"},
                                                 "splits": f"those of {reference.folder}"}, indent=2, default=str))
    return out


def run_compare(ctx: RunContext, out_dir: Path, *, label: str | None = None) -> Report:
    from .run import scatter_for_runs

    datasets = compare_datasets(ctx)
    steps = compare_steps(datasets)
    for run in with_dependencies(list(steps.values()), ctx.overrides):
        ctx.ensure(run)
    zero = zero_shot_results(ctx, datasets, steps["gamma-t"], out_dir / "zero-shot")
    shots = (base_recipe(steps["grmp"], ctx.overrides).get("protocol") or {}).get("shots") or []
    methods = [("zero-shot (5 level prompts)", RunResults(zero), {})]
    methods += [(f"GRMP-IQA, {k} images", RunResults(ctx.run_dir(steps["grmp"])), {"k": k}) for k in shots]
    methods += [("Gamma-T (task-specific, all of the 80 %)", RunResults(ctx.run_dir(steps["gamma-t"])), {}),
                ("Gamma (mixed, all of the 80 %)", RunResults(ctx.run_dir(steps["gamma"])), {})]
    rows = []
    for method, results, params in methods:
        cells = []
        for name in datasets:
            for metric in ("srcc", "plcc"):
                found = results.find(name, metric, **params)
                cells.append(Cell(f"{dataset_label(name)} {metric.upper()}", {"dataset": name, "metric": metric, **params},
                                  ours=found.value, where=found.where, n_splits=found.n_splits))
        rows.append(Row(method, cells))
    report = Report("compare", "zero-shot, GRMP-IQA few-shot and Gamma on the same datasets and splits", "perceptiq")
    report.context = [
        f"data: {label}" if label else "data: " + ", ".join(f"{k}={v}" for k, v in ctx.roots.items()),
        f"runs: {'read from ' + str(ctx.from_dir) if ctx.from_dir else 'in ' + str(ctx.runs_dir)}",
        "overrides (--set) on every recipe: " + (" ".join(f"`{o}`" for o in ctx.overrides) or "none"),
        f"written {datetime.datetime.now().isoformat(timespec='seconds')}; {machine_line()}",
    ]
    report.runs = [(run.describe(), str(ctx.run_dir(run))) for run in with_dependencies(list(steps.values()), ctx.overrides)]
    report.runs.append(("zero-shot model on the same test parts", str(zero)))
    report.sections.append(Section("Median over the same splits (SRCC, PLCC)", rows, notes=[
        "Every method is tested on split k's test part (mode auto: by reference image for synthetic datasets); "
        "GRMP-IQA trains on k images of split k's 80 % part, Gamma on all of it. TID2013 and KADID-10k are "
        "GRMP-IQA's meta pre-training sets and are not compared."], ours_only=True))
    out_dir.mkdir(parents=True, exist_ok=True)
    report.figures += scatter_for_runs(list(steps.values()), ctx, out_dir)
    report.write(out_dir)
    return report
