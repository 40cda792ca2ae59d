"""Run a recipe: plan the train/test units its protocol implies, train one model per unit with the one
``Trainer``, score the final epoch on each test part, and report the median over splits.

Protocols (``protocol.kind``):

* ``mixed`` — one model per split seed, trained on the union of every dataset's training part, tested
  on each dataset's own test part (Gamma section 4.2);
* ``separate`` — one model per dataset, setting (k-shot ``k`` / training ``fraction``) and split seed
  (Gamma-T, GRMP Tables 1-2);
* ``cross`` — train on the whole of a source dataset, test on the whole of each target (GRMP Table 3);
* ``zero-shot`` — no training, test on whole datasets (GRMP Table 4, Gamma Table 13).

The reported figure is always the final epoch's, never the best epoch picked on the test part.

A run survives being stopped (``resume=True``; ``perceptiq.training.resume``): a unit whose results are
recorded (``<unit>/unit.json``) is read back instead of trained again, and the unit in progress continues
from its last completed epoch.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import LabeledDataset, load_dataset
from ..data.splits import K_SHOT, SUBSET_FRACTION, Split, default_split_mode, make_repeated_splits, save_splits, whole_dataset_split
from ..evaluation.protocols import score_split
from ..evaluation.report import ProtocolResult, SplitScore
from ..models import build_model, save_checkpoint
from ..models.checkpoints import load_checkpoint
from .config import TrainConfig
from .data import TrainItem
from .distributed import init_from_env
from .resume import (STATE_DIR, atomic_write_json, check_recorded_run, clear_loop_state, read_unit_result,
                     record_new_run, run_identity, write_unit_result)
from .trainer import Trainer

log = logging.getLogger(__name__)

PROTOCOLS = ("mixed", "separate", "cross", "zero-shot")


@dataclass
class RunUnit:
    """One model to train (or none, zero-shot) and the test parts it is scored on."""

    label: str
    train: dict[str, list]                       # dataset -> training samples
    test: dict[str, tuple[Split, list]]          # dataset -> (split, test samples)
    train_overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    row_params: dict[str, Any] = field(default_factory=dict)   # added to every result row (cross: the source)


@dataclass
class ExperimentResult:
    recipe: dict
    result: ProtocolResult
    run_dirs: list[Path]


# -- planning ------------------------------------------------------------------------------------------
def split_mode_for(dataset: LabeledDataset, mode: str) -> str:
    """``auto``: by reference image when the dataset has references (synthetic datasets, a CSV with a
    ``ref`` column; GRMP), random otherwise (``perceptiq.data.splits.default_split_mode``)."""
    if mode == "auto":
        return default_split_mode(dataset.samples, synthetic=dataset.spec.synthetic, dataset=dataset.spec.name)
    return mode


def _split_list(dataset: LabeledDataset, split_cfg: dict, **subset) -> list[Split]:
    mode = split_mode_for(dataset, split_cfg.get("mode", "random"))
    options: dict[str, Any] = {"train_fraction": split_cfg.get("train_fraction", 0.8)}
    if subset.get("k") is not None:
        options.update(base_mode=mode, k=subset["k"])
        mode = K_SHOT
    elif subset.get("fraction") is not None:
        options.update(base_mode=mode, fraction=subset["fraction"])
        mode = SUBSET_FRACTION
    return make_repeated_splits(dataset.samples, dataset.spec.name, mode, split_cfg.get("n_splits", 10),
                                base_seed=split_cfg.get("base_seed", 0), **options)


def plan_runs(recipe: dict, datasets: Mapping[str, LabeledDataset]) -> list[RunUnit]:
    protocol = recipe["protocol"]
    kind = protocol.get("kind")
    split_cfg = protocol.get("split", {})
    per_dataset = recipe.get("per_dataset") or {}
    units: list[RunUnit] = []
    if kind == "mixed":
        by_dataset = {name: _split_list(ds, split_cfg) for name, ds in datasets.items()}
        n = min(len(s) for s in by_dataset.values())
        for i in range(n):
            train, test = {}, {}
            for name, ds in datasets.items():
                split = by_dataset[name][i]
                parts = split.apply(ds.samples)
                train[name], test[name] = parts.train, (split, parts.test)
            units.append(RunUnit(f"split{i:02d}", train, test, seed=by_dataset[next(iter(datasets))][i].seed or 0))
    elif kind == "separate":
        settings = [{"k": k} for k in protocol.get("shots", [])] or \
                   [{"fraction": f} for f in protocol.get("fractions", [])] or [{}]
        for name, ds in datasets.items():
            fractions = protocol.get("fraction_by_dataset", {})
            dataset_settings = [{"fraction": fractions[name]}] if name in fractions else settings
            for setting in dataset_settings:
                for split in _split_list(ds, split_cfg, **setting):
                    parts = split.apply(ds.samples)
                    tag = "".join(f"-{k}{v}" for k, v in setting.items())
                    units.append(RunUnit(f"{name}{tag}-seed{split.seed}", {name: parts.train},
                                         {name: (split, parts.test)}, dict(per_dataset.get(name, {})),
                                         seed=split.seed or 0))
    elif kind == "cross":
        for source, targets in protocol["pairs"]:
            targets = [targets] if isinstance(targets, str) else list(targets)
            test = {t: (whole_dataset_split(datasets[t].samples, t), list(datasets[t].samples)) for t in targets}
            units.append(RunUnit(f"{source}-to-{'+'.join(targets)}", {source: list(datasets[source].samples)}, test,
                                 dict(per_dataset.get(source, {})), row_params={"train": source}))
    elif kind == "zero-shot":
        test = {n: (whole_dataset_split(ds.samples, n), list(ds.samples)) for n, ds in datasets.items()}
        units.append(RunUnit("zero-shot", {}, test))
    elif kind == "meta":
        raise ValueError("protocol.kind = 'meta' is meta pre-training: run it with `perceptiq meta-train --recipe ...`")
    elif kind == "crop-bank":
        raise ValueError("protocol.kind = 'crop-bank' is the built-in model's recipe: run it with "
                         "`perceptiq build-tiny --photos DIR --recipe ...`")
    else:
        raise ValueError(f"protocol.kind = {kind!r}: choose one of {', '.join(PROTOCOLS)}")
    return units


def datasets_needed(recipe: dict) -> list[str]:
    protocol = recipe["protocol"]
    names = list(protocol.get("datasets", []))
    for source, targets in protocol.get("pairs", []):
        for name in [source, *([targets] if isinstance(targets, str) else targets)]:
            if name not in names:
                names.append(name)
    return names


def load_datasets(names: Sequence[str], roots: Mapping[str, str | Path], *, missing: str = "error"
                  ) -> dict[str, LabeledDataset]:
    absent = [n for n in names if n not in roots]
    if absent:
        raise ValueError(f"the recipe needs dataset(s) {', '.join(absent)}: give each with --data NAME=ROOT, "
                         f"or narrow the recipe with --set protocol.datasets=[...]")
    return {name: load_dataset(name, roots[name], missing=missing) for name in names}


# -- running ---------------------------------------------------------------------------------------------
REQUIRED_WEIGHTS = {
    # model.require_weights value -> (what the weights are, the file its authors release, how to give it)
    "uniqa": ("UniQA's CLIP-B/16 weights", "UniQA_weight.pt", "model.weights=uniqa:/path/to/UniQA_weight.pt"),
}


def check_required_weights(recipe: dict) -> None:
    """Fail before any data is read when ``model.require_weights`` names weights the recipe lacks.

    ``require_weights: uniqa`` (gamma-transfer's ``from-uniqa``: Gamma Table 7 "Ours" starts from UniQA)
    needs ``model.weights`` = ``uniqa:PATH`` with PATH an existing file; ``openai`` or ``random`` would
    silently run another experiment than the one the variant names.
    """
    model_cfg = recipe.get("model") or {}
    required = model_cfg.get("require_weights")
    if not required:
        return
    if required not in REQUIRED_WEIGHTS:
        raise ValueError(f"model.require_weights = {required!r}: choose one of {', '.join(REQUIRED_WEIGHTS)}")
    what, filename, how = REQUIRED_WEIGHTS[required]
    weights = str(model_cfg.get("weights") or "")
    name = recipe.get("name", "this recipe")
    prefix = f"{required}:"
    if not weights.startswith(prefix):
        raise ValueError(
            f"{name} starts from {what} (missing: {filename}), but model.weights is {weights or 'unset'!r}. "
            f"Give the file with --set {how}")
    path = Path(weights[len(prefix):]).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} starts from {what}, and model.weights names {path}, which does not exist "
            f"(missing: {filename}). Give the file with --set {how}")


def init_checkpoint_path(recipe: dict, unit: RunUnit | None = None) -> str | None:
    """``model.init`` with ``{seed}`` (the unit's split seed) and ``{index}`` (seed - protocol.split.base_seed)
    filled in, so split k of a run can start from split k's checkpoint of an earlier run (Gamma Table 7)."""
    init = (recipe.get("model") or {}).get("init")
    if not init:
        return None
    seed = unit.seed if unit is not None else 0
    base_seed = ((recipe.get("protocol") or {}).get("split") or {}).get("base_seed", 0)
    try:
        return str(init).format(seed=seed, index=seed - base_seed)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"model.init '{init}': only {{seed}} and {{index}} can be filled in ({err})") from None


def build_run_model(recipe: dict, device: torch.device | str, unit: RunUnit | None = None):
    model_cfg = recipe["model"]
    bundle = build_model(model_cfg["name"], backbone=model_cfg.get("backbone"), weights=model_cfg.get("weights"),
                         task=model_cfg.get("task"), scene=model_cfg.get("scene"), device=device,
                         stem=model_cfg.get("stem"), **(model_cfg.get("options") or {}))
    module = bundle.module
    init = init_checkpoint_path(recipe, unit)
    if init:
        tensors, _ = load_checkpoint(init)
        missing_keys, unexpected = module.load_state_dict(tensors, strict=False)
        if unexpected:
            raise ValueError(f"model.init {init}: parameters the model does not have: {unexpected[:5]}")
        untouched = [n for n, p in module.named_parameters() if p.requires_grad and n not in tensors]
        if untouched:  # e.g. a 2-layer Gamma checkpoint in a 3-layer model: say so, loudly
            log.warning("model.init %s does not hold %d trainable parameter(s) of this model (e.g. %s); "
                        "they keep their initial values", init, len(untouched), untouched[:3])
    trainable = model_cfg.get("trainable")
    if trainable:
        if not hasattr(module, "set_trainable"):
            raise ValueError(f"model {model_cfg['name']} has no selectable trainable sets (model.trainable)")
        module.set_trainable(trainable)
    return bundle


def to_items(samples: Sequence, dataset: LabeledDataset, module, prompt_style: str | None = None) -> list[TrainItem]:
    """Training items; the model maps each dataset's task and scene to its prompt key (in its own prompt
    style, or in ``prompt_style`` when given: Gamma Table 15's prompts swapped at test time)."""
    key_for = getattr(module, "prompt_key_for", None)
    if prompt_style is not None and key_for is None:
        raise ValueError(f"model.test_prompts: model {type(module).__name__} has no prompt styles to swap")
    style = {} if prompt_style is None else {"style": prompt_style}
    items = []
    for s in samples:
        scene = getattr(s, "scene", None) or dataset.spec.scene
        key = str(key_for(task=dataset.spec.task, scene=scene, **style)) if key_for else None
        items.append(TrainItem(str(s.path), float(s.score), dataset.spec.name, key))
    return items


def swapped_prompt_rows(recipe: dict, module, trainer: Trainer, unit: RunUnit,
                     datasets: Mapping[str, LabeledDataset], n_train: int) -> list:
    """Gamma Table 15: the trained model's test parts scored again with other prompts, for every prompt
    style in ``model.test_prompts`` (naive | quality | general | sdp). Nothing is retrained: only the text
    side's prompts change. Each dataset gets the style's key for its own task (and, for sdp, its own
    scene), e.g. LIVEC under ``general`` is scored with "general {bad..perfect}-quality image" and AVA with
    "general {bad..perfect}-aesthetics image". Rows carry ``test_prompt=<style>`` in their parameters."""
    styles = (recipe.get("model") or {}).get("test_prompts")
    if not styles:
        return []
    styles = [styles] if isinstance(styles, str) else list(styles)
    _, eval_tf = trainer.transforms(module)
    rows = []
    for style in styles:
        for name, (split, samples) in unit.test.items():
            items = to_items(samples, datasets[name], module, prompt_style=style)
            row = score_split(split, samples, trainer.predict(module, items, eval_tf), n_train=n_train)
            rows.append(dataclasses.replace(row, params={**row.params, "test_prompt": style}))
    return rows


def forced_expert_rows(recipe: dict, module, trainer: Trainer, unit: RunUnit,
                       test_items: Mapping[str, list[TrainItem]], n_train: int) -> list:
    """Gamma Table 6: each test part scored again with only one adaptive expert kept, for every index in
    ``model.force_expert`` (an int or a list, 0-based; ``model.force_expert_renormalize`` gives the kept
    expert weight 1). Rows carry ``force_expert=i`` in their parameters; the model is restored after."""
    model_cfg = recipe.get("model") or {}
    forced = model_cfg.get("force_expert")
    if forced is None:
        return []
    if not hasattr(module, "set_forced_expert"):
        raise ValueError(f"model.force_expert: model {model_cfg.get('name')} has no adaptive experts to force")
    indices = [forced] if isinstance(forced, int) else list(forced)
    renormalize = bool(model_cfg.get("force_expert_renormalize", False))
    _, eval_tf = trainer.transforms(module)
    rows = []
    try:
        for index in indices:
            module.set_forced_expert(int(index), renormalize=renormalize)
            for name, (split, samples) in unit.test.items():
                row = score_split(split, samples, trainer.predict(module, test_items[name], eval_tf), n_train=n_train)
                rows.append(dataclasses.replace(row, params={**row.params, "force_expert": int(index)}))
    finally:
        module.set_forced_expert(None)
    return rows


def rows_to_json(rows: Sequence[SplitScore]) -> list[dict]:
    return [dataclasses.asdict(row) for row in rows]


def rows_from_json(records: Sequence[Mapping]) -> list[SplitScore]:
    return [SplitScore(**{**record, "notes": tuple(record.get("notes") or ())}) for record in records]


PREDICTIONS_FILE = "predictions.csv"


def write_predictions(path: Path, unit: RunUnit, predictions: Mapping[str, Sequence[float]]) -> Path:
    """One row per test image of a unit: ``dataset, path, mos, predicted`` (``mos``: the normalised
    subjective score the metrics use; ``predicted``: the final model's score, NaN where decoding failed).
    Scatter plots and re-analyses read it instead of re-running the model."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "path", "mos", "predicted"])
        for name, (_, samples) in unit.test.items():
            for sample, predicted in zip(samples, predictions[name]):
                writer.writerow([name, str(sample.path), repr(float(sample.score)), repr(float(predicted))])
    return path


def run_experiment(recipe: dict, roots: Mapping[str, str | Path], out_dir: str | Path, *,
                   device: str | torch.device = "cpu", progress: bool = False, max_runs: int | None = None,
                   missing: str = "error", trainer_kwargs: dict | None = None,
                   datasets: Mapping[str, LabeledDataset] | None = None, resume: bool = False) -> ExperimentResult:
    """Run every unit of a recipe's protocol; write checkpoints, logs, splits and the result table.

    ``resume``: continue the run recorded in ``out_dir`` (its recipe, roots and ``missing`` must equal
    these, else ``ResumeMismatchError`` names the keys that differ): finished units are read back, the
    unit in progress continues from its last completed epoch. Under torchrun every process runs this;
    rank 0 alone writes files (docs/scale-out.md); resuming under torchrun is refused.
    """
    distributed = init_from_env(device)  # None unless started by torchrun
    if distributed is not None:
        if resume:
            raise ValueError("resuming a torchrun run is not supported: each process's RNG state would have "
                             "to be saved; rerun it without --resume")
        device = distributed.device
        trainer_kwargs = {"distributed": distributed, **(trainer_kwargs or {})}
    is_main = distributed is None or distributed.is_main
    check_required_weights(recipe)
    out_dir = Path(out_dir)
    identity = run_identity(recipe, roots if datasets is None else {n: ds.root for n, ds in datasets.items()},
                            missing=missing)
    run_id = check_recorded_run(out_dir, identity) if resume else None   # refused before any work
    # ``datasets``: already loaded (e.g. generic CSVs under their own names) instead of ``roots``
    datasets = dict(datasets) if datasets is not None else load_datasets(datasets_needed(recipe), roots, missing=missing)
    units = plan_runs(recipe, datasets)[:max_runs]
    # the first unit's model is built before anything is written: a recipe the model refuses (e.g. Gamma's 6
    # MoAE layers on a 4-block backbone) leaves no half-written run folder behind
    prebuilt = (units[0].label, build_run_model(recipe, device, units[0])) if units and not resume else None
    out_dir.mkdir(parents=True, exist_ok=True)
    if run_id is None:
        run_id = record_new_run(out_dir, identity, write=is_main)
    if is_main:
        save_splits(out_dir / "splits.json", [split for u in units for split, _ in u.test.values()])
        atomic_write_json(out_dir / "recipe.json", recipe)
    rows, run_dirs = [], []
    for unit in units:
        run_dir = out_dir / unit.label
        done = read_unit_result(run_dir, run_id=run_id) if resume else None
        if done is not None:   # finished before the run was stopped: its rows, not a second training
            rows += rows_from_json(done["rows"])
            run_dirs.append(run_dir)
            log.info("%s finished earlier; results read back from %s", unit.label, run_dir)
            continue
        unit_rows = []
        if prebuilt is not None and prebuilt[0] == unit.label:
            bundle, prebuilt = prebuilt[1], None
        else:
            bundle = build_run_model(recipe, device, unit)
        module = bundle.module
        if distributed is not None:
            distributed.broadcast_module(module)
        test_items = {name: to_items(samples, datasets[name], module) for name, (_, samples) in unit.test.items()}
        n_train = sum(len(s) for s in unit.train.values())
        if unit.train:
            config = TrainConfig.from_dict({**(recipe.get("train") or {}), **unit.train_overrides,
                                            "seed": (recipe.get("train") or {}).get("seed", 0) + unit.seed})
            trainer = Trainer(config, device=device, out_dir=run_dir, progress=progress, run_id=run_id,
                              **(trainer_kwargs or {}))
            train_items = [it for name, samples in unit.train.items() for it in to_items(samples, datasets[name], module)]
            result = trainer.fit(module, train_items, test_items, resume=resume)
            predictions = result.final_predictions
            if is_main:
                save_checkpoint(run_dir / "model.safetensors", module.trainable_state_dict(), {
                    **bundle.config, "trained_parameters": sorted(module.trainable_state_dict()),
                    "recipe": recipe.get("name"), "run": unit.label, "view": config.test_view,
                    "train": config.to_dict(), "final_metrics": result.final_metrics,
                })
        else:
            trainer = Trainer(TrainConfig.from_dict(recipe.get("train") or {}), device=device,
                              distributed=distributed)
            _, eval_tf = trainer.transforms(module)
            predictions = {name: trainer.predict(module, items, eval_tf) for name, items in test_items.items()}
        for name, (split, samples) in unit.test.items():
            row = score_split(split, samples, predictions[name], n_train=n_train)
            unit_rows.append(dataclasses.replace(row, params={**row.params, **unit.row_params}) if unit.row_params else row)
        unit_rows += forced_expert_rows(recipe, module, trainer, unit, test_items, n_train)
        unit_rows += swapped_prompt_rows(recipe, module, trainer, unit, datasets, n_train)
        rows += unit_rows
        if is_main:
            write_predictions(run_dir / PREDICTIONS_FILE, unit, predictions)
        run_dirs.append(run_dir)
        if is_main:   # after the checkpoint: a recorded unit is a finished one
            write_unit_result(run_dir, {"label": unit.label, "rows": rows_to_json(unit_rows)}, run_id=run_id)
            clear_loop_state(run_dir / STATE_DIR)
            log.info("finished %s", unit.label)
    result = ProtocolResult(rows=tuple(rows))
    if is_main:
        result.write(out_dir / "results.md")
        result.write(out_dir / "results.csv")
    return ExperimentResult(recipe, result, run_dirs)
