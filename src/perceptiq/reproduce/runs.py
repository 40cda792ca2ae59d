"""The recipe runs a reproduce target needs: which, in what order, and where their folders are.

A :class:`RunStep` is one recipe run (a shipped recipe, a variant, a few overrides of the target's own),
written to ``<runs>/<step name>`` exactly as ``perceptiq train`` / ``meta-train`` would write it; the
default step name is ``perceptiq train``'s default run folder (``gamma-mixed-layers-4``), so runs made
by hand under ``runs/`` are found. A recipe whose ``model.init`` points into ``runs/<name>/`` (GRMP's
meta-learned prompts, Gamma Table 7's mixed checkpoints, Table 13's trained model) depends on the step
of that name, which is added and run first; the path is rewritten to the runs folder in use.

:class:`RunContext` runs the steps (or, with ``from_dir``, only reads finished folders):

* a folder that already holds a finished run of the *same* recipe (``recipe.json`` equal to what would
  run) is reused, never retrained, so targets sharing a run (Gamma Tables 1-6 all need ``gamma-mixed``)
  train it once;
* a folder that holds a different recipe is an error that names the first difference;
* a folder that holds an unfinished run (stopped) is continued, as ``perceptiq train --resume`` does;
* ``from_dir``: nothing is trained; a missing run is an error naming it and the command that makes it.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUNS_PREFIX = "runs/"
_RUN_REFERENCE = re.compile(r"^runs/([^/{}]+)/")
MARKER = "reproduce.json"   # written next to a run's results when reproduce ran it (max_runs, overrides)


@dataclass(frozen=True)
class RunStep:
    """One recipe run: ``recipe`` (+ ``variant``) with the target's own ``overrides`` on top."""

    recipe: str
    variant: str | None = None
    overrides: tuple[str, ...] = ()
    name: str = ""

    @property
    def folder(self) -> str:
        if self.name:
            return self.name
        return self.recipe + (f"-{self.variant}" if self.variant else "")

    def describe(self) -> str:
        text = self.recipe + (f" --variant {self.variant}" if self.variant else "")
        return text + "".join(f" --set {o}" for o in self.overrides)


def step(recipe: str, variant: str | None = None, *overrides: str, name: str = "") -> RunStep:
    return RunStep(recipe, variant, tuple(overrides), name)


def step_for_folder(folder: str) -> RunStep:
    """The step whose default folder is ``folder`` (``grmp-meta-erm`` -> grmp-meta, variant erm)."""
    from ..recipes import list_recipes, load_recipe

    names = list_recipes()
    if folder in names:
        return RunStep(folder)
    for name in sorted(names, key=len, reverse=True):
        if folder.startswith(name + "-"):
            variant = folder[len(name) + 1:]
            if variant in (load_recipe(name).get("variants") or {}):
                return RunStep(name, variant)
    raise ValueError(f"model.init points into runs/{folder}/, which no shipped recipe (or variant) writes")


def set_overrides(recipe: dict, overrides: Sequence[str]) -> dict:
    from ..recipes import apply_override

    for override in overrides:
        apply_override(recipe, override)
    return recipe


def base_recipe(run: RunStep, global_overrides: Sequence[str] = ()) -> dict:
    """The step's recipe: variant, then the step's overrides, then the command line's (which win)."""
    from ..recipes import load_recipe, resolve_variant

    recipe = resolve_variant(load_recipe(run.recipe), run.variant)
    return set_overrides(set_overrides(recipe, run.overrides), global_overrides)


def referenced_folder(recipe: dict) -> str | None:
    """``gamma-mixed`` for ``model.init: runs/gamma-mixed/split{index:02d}/model.safetensors``."""
    init = (recipe.get("model") or {}).get("init")
    match = _RUN_REFERENCE.match(str(init)) if init else None
    return match.group(1) if match else None


def with_dependencies(steps: Sequence[RunStep], global_overrides: Sequence[str] = ()) -> list[RunStep]:
    """``steps`` plus every step their ``model.init`` needs, each needed step before its users."""
    ordered: list[RunStep] = []
    seen: set[str] = set()

    def visit(run: RunStep, chain: tuple[str, ...]) -> None:
        if run.folder in seen:
            return
        if run.folder in chain:
            raise ValueError(f"runs depend on each other in a circle: {' -> '.join(chain + (run.folder,))}")
        needed = referenced_folder(base_recipe(run, global_overrides))
        if needed:
            known = {s.folder: s for s in steps}
            visit(known.get(needed) or step_for_folder(needed), chain + (run.folder,))
        seen.add(run.folder)
        ordered.append(run)

    for run in steps:
        visit(run, ())
    return ordered


def datasets_of(recipe: dict) -> list[str]:
    """Every dataset a recipe reads: ``protocol.datasets``, the cross pairs' sources and targets, and a meta
    recipe's ``eval_datasets`` (as ``training.experiment.datasets_needed``, without importing torch)."""
    protocol = recipe.get("protocol") or {}
    names = list(protocol.get("datasets") or [])
    for source, targets in protocol.get("pairs") or []:
        names += [source, *([targets] if isinstance(targets, str) else targets)]
    names += list(protocol.get("eval_datasets") or [])
    return list(dict.fromkeys(names))


def _canonical(recipe: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(recipe, default=str))


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Dotted path of the first difference between two JSON-like values (None when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}{key}"
            found = first_difference(a[key], b[key], f"{path}{key}.")
            if found:
                return found
        return None
    return None if a == b else path.rstrip(".") or "(top level)"


@dataclass
class RunContext:
    """Where runs live and how they are made.

    roots: ``--data`` NAME -> ROOT; runs_dir: folder of run folders (trained here when missing);
    from_dir: read finished runs from here and train nothing; overrides: ``--set`` for every recipe.
    """

    roots: Mapping[str, str | Path] = field(default_factory=dict)
    runs_dir: Path = Path("runs")
    from_dir: Path | None = None
    overrides: tuple[str, ...] = ()
    device: Any = "cpu"
    progress: bool = False
    missing: str = "error"
    max_runs: int | None = None
    options: dict = field(default_factory=dict)     # target options from the command line (e.g. rival)
    _datasets: dict = field(default_factory=dict)

    @property
    def folder_root(self) -> Path:
        return Path(self.from_dir) if self.from_dir is not None else Path(self.runs_dir)

    def run_dir(self, run: RunStep) -> Path:
        return self.folder_root / run.folder

    def recipe(self, run: RunStep) -> dict:
        """The recipe as it runs here: ``runs/`` in ``model.init`` points at this context's folder."""
        recipe = base_recipe(run, self.overrides)
        init = (recipe.get("model") or {}).get("init")
        if init and str(init).startswith(RUNS_PREFIX):
            recipe["model"]["init"] = str(self.folder_root / str(init)[len(RUNS_PREFIX):])
        return recipe

    def datasets_needed(self, steps: Sequence[RunStep]) -> list[str]:
        names: list[str] = []
        for run in steps:
            for name in datasets_of(self.recipe(run)):
                if name not in names:
                    names.append(name)
        return names

    @staticmethod
    def is_finished(run_dir: Path, recipe: dict) -> bool:
        kind = (recipe.get("protocol") or {}).get("kind")
        marker = run_dir / ("model.safetensors" if kind == "meta" else "results.csv")
        return marker.is_file()

    def saved_recipe(self, run_dir: Path) -> dict | None:
        path = run_dir / "recipe.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def ensure(self, run: RunStep) -> Path:
        """The finished run folder of ``run``: reused, read (``from_dir``) or trained now."""
        recipe = self.recipe(run)
        run_dir = self.run_dir(run)
        finished = self.is_finished(run_dir, recipe)
        if self.from_dir is not None:
            if not finished:
                raise FileNotFoundError(
                    f"{run_dir}: no finished run of {run.describe()} (--from reads runs, it trains none); "
                    f"make it with `perceptiq {'meta-train' if self._is_meta(recipe) else 'train'} --recipe "
                    f"{run.recipe}{' --variant ' + run.variant if run.variant else ''} -o {run_dir}` or run "
                    "`perceptiq reproduce` without --from")
            return run_dir
        roots = self._roots_of(recipe)
        if finished:
            saved = self.saved_recipe(run_dir)
            difference = None if saved is None else first_difference(_canonical(saved), _canonical(recipe))
            marker = self._marker(run_dir)
            same_data = marker.get("data", roots) == roots      # runs made by `perceptiq train` have no marker
            if saved is not None and difference is None and marker.get("max_runs") == self.max_runs and same_data:
                log.info("reusing %s (same recipe and data, finished)", run_dir)
                return run_dir
            if saved is None:
                reason = "it has no recipe.json"
            elif difference:
                reason = f"its recipe differs at '{difference}'"
            elif not same_data:
                changed = sorted(k for k in set(roots) | set(marker.get("data", {})) if roots.get(k) != marker["data"].get(k))
                reason = f"it read other data for {', '.join(changed)}"
            else:
                reason = f"it ran with --max-runs {marker.get('max_runs')}"
            raise ValueError(f"{run_dir} holds another run of {run.folder} ({reason}); move it away, or give "
                             "another --runs folder")
        # an unfinished run (stopped): continue it as `perceptiq train --resume` would; a run of other
        # settings there is refused by the resume check, which names what differs
        resume = run_dir.is_dir() and any(run_dir.iterdir())
        if resume:
            log.info("continuing the unfinished run in %s", run_dir)
        self._train(run, recipe, run_dir, resume=resume)
        (run_dir / MARKER).write_text(json.dumps({"step": run.describe(), "max_runs": self.max_runs, "data": roots,
                                                  "overrides": list(self.overrides)}, indent=2))
        return run_dir

    def _roots_of(self, recipe: dict) -> dict[str, str]:
        """The resolved roots of the datasets ``recipe`` reads (recorded with a run, compared on reuse)."""
        return {n: str(Path(self.roots[n]).resolve()) for n in datasets_of(recipe) if n in self.roots}

    def _marker(self, run_dir: Path) -> dict:
        path = run_dir / MARKER
        return json.loads(path.read_text()) if path.is_file() else {"max_runs": None}

    @staticmethod
    def _is_meta(recipe: dict) -> bool:
        return (recipe.get("protocol") or {}).get("kind") == "meta"

    def datasets(self, names: Sequence[str]) -> dict:
        """Datasets read once per context (several runs of a target read the same ones)."""
        from ..training.experiment import load_datasets

        missing = [n for n in names if n not in self._datasets]
        if missing:
            self._datasets.update(load_datasets(missing, self.roots, missing=self.missing))
        return {n: self._datasets[n] for n in names}

    def _train(self, run: RunStep, recipe: dict, run_dir: Path, *, resume: bool = False) -> None:
        log.info("running %s -> %s", run.describe(), run_dir)
        if self._is_meta(recipe):
            from ..training.meta_training import run_meta_recipe

            run_meta_recipe(recipe, self.roots, run_dir, device=self.device, progress=self.progress,
                            missing=self.missing, resume=resume)
            return
        from ..training.experiment import datasets_needed, run_experiment

        run_experiment(recipe, self.roots, run_dir, device=self.device, progress=self.progress,
                       max_runs=self.max_runs, missing=self.missing,
                       datasets=self.datasets(datasets_needed(recipe)), resume=resume)
