"""Cells of ours that are not a test metric: parameter counts and training time (Gamma Table 5) and
training settings read from a recipe (Gamma Table 8)."""
from __future__ import annotations

import statistics

from .results import Found, RunResults
from .runs import RunContext, RunStep


def total_parameters_millions(run: RunStep, ctx: RunContext) -> Found:
    """Total parameters of the model the run's recipe builds (counted on a random-weight build: the
    count does not depend on the values), in millions."""
    from ..models import build_model
    from ..models.analysis import count_parameters

    recipe = RunResults(ctx.run_dir(run)).recipe or ctx.recipe(run)
    model = recipe["model"]
    bundle = build_model(model["name"], backbone=model.get("backbone"), weights="random", task=model.get("task"),
                         scene=model.get("scene"), **(model.get("options") or {}))
    total = count_parameters(bundle.module).total
    return Found(total / 1e6, f"{run.folder}: parameters of {model['name']} on {model.get('backbone')}, counted")


def training_hours(run: RunStep, ctx: RunContext) -> Found:
    """Median over the run's units of the training time (sum of the epochs' seconds), in hours."""
    times = RunResults(ctx.run_dir(run)).training_seconds()
    if not times:
        return Found(None, f"{run.folder}: no epochs.jsonl")
    return Found(statistics.median(times) / 3600.0,
                 f"{run.folder}: training time per split (median of {len(times)}), this machine", len(times))


def recipe_setting(run: RunStep, dataset: str, key: str, ctx: RunContext) -> Found:
    """A training setting (``epochs``, ``batch_size``) of ``dataset``'s units as the recipe runs them:
    ``per_dataset`` over ``train``."""
    recipe = ctx.recipe(run)
    per_dataset = (recipe.get("per_dataset") or {}).get(dataset) or {}
    train = recipe.get("train") or {}
    if key in per_dataset:
        return Found(float(per_dataset[key]), f"{run.recipe}: per_dataset.{dataset}.{key}")
    if key in train:
        return Found(float(train[key]), f"{run.recipe}: train.{key} (no per_dataset entry for {dataset})")
    return Found(None, f"{run.recipe}: no {key} for {dataset}")
