"""Assessment models: registry (name -> metadata + factory), builders, checkpoints.

The registry (metadata from ``catalog.yaml``) is imported eagerly and needs no torch; everything that
builds or loads a module is imported on first use (PEP 562 ``__getattr__``), so reading the catalog
(``perceptiq models``) does not pay for torch and open_clip. Factories register themselves when the
registry first needs them (``registry.FACTORY_MODULES``).
"""
from __future__ import annotations

import importlib

from .registry import SHIPPED_WEIGHTS, ModelSpec, get_model_spec, list_models, register_factory, register_model

_LAZY = {
    "atomic_write_bytes": ".checkpoints", "is_checkpoint": ".checkpoints", "load_checkpoint": ".checkpoints",
    "save_checkpoint": ".checkpoints",
    "AssessmentBundle": ".loading", "build_model": ".loading",
    "ScoreOutput": ".zero_shot", "ZeroShotAssessor": ".zero_shot",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "atomic_write_bytes", "is_checkpoint", "load_checkpoint", "save_checkpoint",
    "AssessmentBundle", "build_model", "ModelSpec", "SHIPPED_WEIGHTS", "get_model_spec", "list_models",
    "register_factory", "register_model", "ScoreOutput", "ZeroShotAssessor",
]
