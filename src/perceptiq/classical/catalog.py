"""The classical measures' registry: name -> metadata (``catalog.yaml``) + the class that computes it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from ..suggestions import did_you_mean


@dataclass(frozen=True)
class MeasureSpec:
    """What a report needs to know about a measure; ``score_range`` bounds may be ``math.inf``."""

    name: str
    description: str
    factory: str
    higher_is_better: bool
    score_range: tuple[float, float]
    needs_fitting: bool
    input: str
    citation: str

    def to_dict(self) -> dict:
        """JSON-friendly view (infinite bounds written as None)."""
        low, high = self.score_range
        return {
            "name": self.name,
            "description": self.description,
            "higher_is_better": self.higher_is_better,
            "score_range": [None if math.isinf(low) else low, None if math.isinf(high) else high],
            "needs_fitting": self.needs_fitting,
            "input": self.input,
            "citation": self.citation,
        }


_REQUIRED_KEYS = ("description", "factory", "higher_is_better", "score_range", "needs_fitting", "input", "citation")


@lru_cache(maxsize=1)
def _catalog() -> dict[str, MeasureSpec]:
    raw = yaml.safe_load(resources.files("perceptiq.classical").joinpath("catalog.yaml").read_text())
    specs = {}
    for name, entry in raw.items():
        missing = [key for key in _REQUIRED_KEYS if key not in entry]
        if missing:
            raise ValueError(f"classical/catalog.yaml: measure '{name}' lacks {missing}")
        low, high = (float(bound) for bound in entry["score_range"])
        specs[name] = MeasureSpec(
            name=name,
            description=entry["description"],
            factory=entry["factory"],
            higher_is_better=bool(entry["higher_is_better"]),
            score_range=(low, high),
            needs_fitting=bool(entry["needs_fitting"]),
            input=entry["input"],
            citation=entry["citation"],
        )
    return specs


def list_measures() -> list[MeasureSpec]:
    """Every registered classical measure, in catalogue order."""
    return list(_catalog().values())


def get_measure_spec(name: str) -> MeasureSpec:
    """The metadata of measure ``name``; an unknown name raises ``KeyError`` with a "did you mean"."""
    specs = _catalog()
    if name in specs:
        return specs[name]
    hint = did_you_mean(name, specs)
    raise KeyError(f"unknown classical measure '{name}'.{hint} Known: {', '.join(specs)}.")


def create_measure(name: str, *, params=None, **options):
    """Build measure ``name``.

    A measure that needs fitting (NIQE) is loaded from ``params``, the path of a file written by its
    ``save`` (fit one with e.g. ``NIQEModel.fit(paths)``); ``options`` go to the class's constructor
    for the others.
    """
    spec = get_measure_spec(name)
    factory = _factories()[spec.factory]
    if spec.needs_fitting:
        if params is None:
            raise ValueError(
                f"measure '{name}' must be fitted first: pass params=<file written by {factory.__name__}.save()> "
                f"(fit one with {factory.__name__}.fit(pristine_images))"
            )
        if options:
            raise ValueError(f"measure '{name}': unexpected options {sorted(options)} (its settings are in the params file)")
        return factory.load(params)
    if params is not None:
        raise ValueError(f"measure '{name}' is training-free and takes no params file")
    return factory(**options)


def _factories() -> dict[str, type]:
    from .laplacian import LaplacianVariance
    from .niqe import NIQEModel

    return {"niqe": NIQEModel, "laplacian_variance": LaplacianVariance}
