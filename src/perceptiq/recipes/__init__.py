"""Recipes: one YAML file per experiment of either paper (and the built-in model's), as data.

A recipe has four sections — ``model`` (registered name, backbone, weights, options, starting
checkpoint, what is trainable), ``protocol`` (mixed | separate | cross | zero-shot | meta, datasets,
split), ``train`` (a ``TrainConfig``) and optional ``per_dataset`` overrides (Gamma Table 8). Any value
can be overridden from the command line with ``--set section.key=value`` (YAML syntax for the value).
"""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..suggestions import did_you_mean, refuse_unknown_keys

RECIPE_SECTIONS = ("name", "description", "paper", "model", "protocol", "train", "per_dataset", "meta",
                   "variants", "notes")

#: The keys each ``protocol.kind`` is read for; any other key would do nothing, silently, so
#: ``load_recipe`` refuses it (with the closest known key). Readers: ``training.experiment`` (mixed,
#: separate, cross with ``pairs``, zero-shot), ``training.meta_training`` (meta), ``training.builtin.build``
#: (cross with ``sources``: perceptiq-tiny-v1) and ``training.builtin.ranked`` (crop-bank).
PROTOCOL_KEYS: dict[str, frozenset[str]] = {
    "mixed": frozenset({"kind", "datasets", "split"}),
    "separate": frozenset({"kind", "datasets", "split", "shots", "fractions", "fraction_by_dataset"}),
    "cross": frozenset({"kind", "pairs", "sources", "stages", "synthesize", "tile_min_side", "stored_dtype"}),
    "zero-shot": frozenset({"kind", "datasets"}),
    "meta": frozenset({"kind", "datasets", "eval_datasets"}),
    "crop-bank": frozenset({"kind", "photos_role", "bank", "groups_per_step", "steps_per_epoch", "trainable",
                            "frozen", "train_temperature", "stored_dtype", "default_view"}),
}


def check_protocol(recipe: dict[str, Any], where: str = "") -> None:
    """Refuse keys the recipe's ``protocol.kind`` does not read (an unknown kind is left to the runners,
    which name the kinds they run)."""
    protocol = recipe.get("protocol")
    if not isinstance(protocol, dict) or protocol.get("kind") not in PROTOCOL_KEYS:
        return
    kind = protocol["kind"]
    refuse_unknown_keys(protocol, PROTOCOL_KEYS[kind], what="key", where=f"{where}protocol (kind {kind}): ")


def list_recipes() -> list[str]:
    folder = resources.files("perceptiq.recipes")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None,
                variant: str | None = None) -> dict[str, Any]:
    """A recipe by name (shipped) or path; a named variant is applied first, then ``key.sub=value``
    overrides, so the command line always has the last word."""
    path = Path(str(name_or_path))
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text = path.read_text()
    else:
        names = list_recipes()
        if str(name_or_path) not in names:
            hint = did_you_mean(str(name_or_path), names, cutoff=0.4)
            raise KeyError(f"unknown recipe '{name_or_path}'.{hint} Shipped recipes: {', '.join(names)}")
        text = resources.files("perceptiq.recipes").joinpath(f"{name_or_path}.yaml").read_text()
    recipe = yaml.safe_load(text) or {}
    unknown = sorted(set(recipe) - set(RECIPE_SECTIONS))
    if unknown:
        raise ValueError(f"recipe {name_or_path}: unknown section(s) {unknown}; sections are {RECIPE_SECTIONS}")
    recipe = resolve_variant(recipe, variant)
    for override in overrides or []:
        apply_override(recipe, override)
    check_protocol(recipe, where=f"recipe {name_or_path}: ")
    return recipe


def apply_override(recipe: dict[str, Any], override: str) -> None:
    """``train.lr=1e-4`` / ``protocol.datasets=[koniq10k,spaq]`` / ``model.options.n_experts=5``."""
    if "=" not in override:
        raise ValueError(f"override '{override}' is not key=value")
    key, raw = override.split("=", 1)
    set_value(recipe, key.strip(), parse_value(raw))


def parse_value(raw: str) -> Any:
    """YAML syntax, except that a number YAML 1.1 leaves as a string (``1e-3``) becomes a float."""
    value = yaml.safe_load(raw) if raw != "" else None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def set_value(recipe: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if parts[0] not in RECIPE_SECTIONS:
        raise ValueError(f"'{dotted}': unknown section '{parts[0]}' ({', '.join(RECIPE_SECTIONS)})")
    node = recipe
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"'{dotted}': '{part}' is not a section")
    node[parts[-1]] = value


def resolve_variant(recipe: dict[str, Any], variant: str | None) -> dict[str, Any]:
    """Apply a named variant (e.g. Table 4's rows) on a copy of the recipe."""
    if variant is None:
        return recipe
    variants = recipe.get("variants") or {}
    if variant not in variants:
        raise KeyError(f"recipe {recipe.get('name')} has no variant '{variant}'; variants: {', '.join(variants)}")
    merged = copy.deepcopy(recipe)
    for dotted, value in _flatten(variants[variant]):
        set_value(merged, dotted, value)
    merged["name"] = f"{recipe.get('name')}:{variant}"
    return merged


def _flatten(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            yield from _flatten(value, dotted)
        else:
            yield dotted, value
