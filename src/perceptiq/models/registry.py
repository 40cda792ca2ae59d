"""Model registry: a name -> metadata (``catalog.yaml``) + a factory that builds the module.

Factories are registered by the modules that implement a method (imported on first use, see
``FACTORY_MODULES``); the catalog holds everything a user or a report needs to know about a model (task,
score range, direction, prompts, default backbone). Reading the catalog imports neither torch nor
open_clip, so ``perceptiq models`` answers at once.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Callable

import yaml

from ..suggestions import did_you_mean

if TYPE_CHECKING:
    from ..backbones import ClipBackbone

#: ``default_weights`` of a model whose every tensor ships inside the package (perceptiq-tiny): its
#: backbone is built with random values and the factory loads the shipped tensors over them.
SHIPPED_WEIGHTS = "shipped"

#: The modules that register perceptiq's own factories, imported the first time a factory is needed.
FACTORY_MODULES = ("perceptiq.models.gamma", "perceptiq.models.grmp", "perceptiq.models.builtin")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    factory: str
    tasks: tuple[str, ...]
    scenes: tuple[str, ...]
    score_range: tuple[float, float]
    higher_is_better: bool
    prompts: str
    default_backbone: str
    default_weights: str
    paper: str = ""
    options: dict = field(default_factory=dict)
    default_view: str = "resize"       # how ``score`` looks at an image unless told (perceptiq.imaging views)
    view_reason: str = ""              # why that view
    knows: str = ""                    # what the model was trained to judge (shown by `models` and the page)
    does_not_know: str = ""            # what it has never seen: where not to trust it


Factory = Callable[..., "object"]
_FACTORIES: dict[str, Factory] = {}
_EXTRA_SPECS: dict[str, ModelSpec] = {}


def register_factory(name: str, factory: Factory) -> None:
    """Register a builder ``factory(backbone: ClipBackbone, *, task, scene, **options) -> nn.Module``."""
    _FACTORIES[name] = factory


def register_model(spec: ModelSpec) -> None:
    """Register a model spec from code (packages that ship a model add it here or in catalog.yaml)."""
    _EXTRA_SPECS[spec.name] = spec


def get_factory(name: str) -> Factory:
    _ensure_builtin_factories()
    if name not in _FACTORIES:
        raise KeyError(f"no model factory '{name}' (known: {', '.join(sorted(_FACTORIES))})")
    return _FACTORIES[name]


@lru_cache(maxsize=1)
def _catalog() -> dict[str, ModelSpec]:
    raw = yaml.safe_load(resources.files("perceptiq.models").joinpath("catalog.yaml").read_text())
    specs = {}
    for name, entry in raw.items():
        specs[name] = ModelSpec(
            name=name,
            description=entry["description"],
            factory=entry["factory"],
            tasks=tuple(entry.get("tasks", ["quality"])),
            scenes=tuple(entry.get("scenes", [])),
            score_range=tuple(entry["score_range"]),
            higher_is_better=bool(entry["higher_is_better"]),
            prompts=entry.get("prompts", ""),
            default_backbone=entry["default_backbone"],
            default_weights=entry["default_weights"],
            paper=entry.get("paper", ""),
            options=dict(entry.get("options", {})),
            default_view=entry.get("default_view", "resize"),
            view_reason=entry.get("view_reason", ""),
            knows=entry.get("knows", ""),
            does_not_know=entry.get("does_not_know", ""),
        )
    return specs


def list_models() -> list[ModelSpec]:
    return list({**_catalog(), **_EXTRA_SPECS}.values())


def get_model_spec(name: str) -> ModelSpec:
    specs = {**_catalog(), **_EXTRA_SPECS}
    if name in specs:
        return specs[name]
    hint = did_you_mean(name, specs)
    raise KeyError(f"unknown model '{name}'.{hint} `perceptiq models` lists the registered models.")


def _build_zero_shot(backbone: "ClipBackbone", *, task: str, scene: str | None, method: str = "levels"):
    from .zero_shot import ZeroShotAssessor

    return ZeroShotAssessor(backbone, method=method, task=task, scene=scene)


_BUILTINS_DONE = False


def _ensure_builtin_factories() -> None:
    global _BUILTINS_DONE
    if not _BUILTINS_DONE:
        _FACTORIES.setdefault("zero_shot", _build_zero_shot)
        for module in FACTORY_MODULES:
            importlib.import_module(module)
        _BUILTINS_DONE = True
