"""``perceptiq models``, ``datasets``, ``recipes``: what perceptiq knows, read from its metadata files.

None of these imports torch or open_clip (except ``models --archs``, which asks open_clip for its list).
"""
from __future__ import annotations

import json

import typer

from .common import json_option


def models_command(
    archs: bool = typer.Option(False, "--archs/--no-archs", help="List the CLIP architectures (open_clip's and "
                                                                 "perceptiq's) instead of the models."),
    as_json: bool = json_option(),
) -> None:
    """List registered assessment models and their metadata."""
    if archs:
        from ..backbones.architectures import list_architectures

        names = list_architectures()
        typer.echo(json.dumps(names) if as_json else "\n".join(names))
        return
    from ..models.registry import list_models

    specs = list_models()
    if as_json:
        typer.echo(json.dumps([s.__dict__ for s in specs], indent=2, default=list))
        return
    for s in specs:
        lo, hi = s.score_range
        direction = "higher is better" if s.higher_is_better else "lower is better"
        typer.echo(f"{s.name}\n  {s.description}\n  tasks: {', '.join(s.tasks)}; scenes: "
                   f"{', '.join(s.scenes) or '-'}; score range [{lo:g}, {hi:g}], {direction}\n"
                   f"  prompts: {s.prompts}\n  default backbone: {s.default_backbone} "
                   f"(weights {s.default_weights}); paper: {s.paper}\n"
                   f"  default view: {s.default_view} ({s.view_reason or 'CLIP preprocessing'})"
                   + (f"\n  knows: {s.knows}" if s.knows else "")
                   + (f"\n  does not know: {s.does_not_know}" if s.does_not_know else "") + "\n")


def datasets_command() -> None:
    """List every dataset perceptiq reads, its expected layout and how to point perceptiq at it."""
    from ..data.registry import describe_datasets

    typer.echo(describe_datasets())


def recipes_command(as_json: bool = json_option()) -> None:
    """List the shipped recipes (one per experiment of either paper) and their variants."""
    from ..recipes import list_recipes, load_recipe

    entries = []
    for name in list_recipes():
        recipe = load_recipe(name)
        entries.append({"name": name, "description": str(recipe.get("description", "")).strip(),
                        "paper": recipe.get("paper", ""), "variants": list(recipe.get("variants") or [])})
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    for entry in entries:
        typer.echo(f"{entry['name']}\n  {entry['description']}\n  paper: {entry['paper']}")
        if entry["variants"]:
            typer.echo(f"  variants: {', '.join(entry['variants'])}")
