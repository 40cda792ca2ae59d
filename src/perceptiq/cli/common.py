"""Pieces the command modules share: option enums, error exit, --data parsing."""
from __future__ import annotations

from enum import Enum

import typer


class Task(str, Enum):
    quality = "quality"
    aesthetics = "aesthetics"


class Scene(str, Enum):
    natural = "natural"
    ai_generated = "ai-generated"
    face = "face"
    underwater = "underwater"
    auto = "auto"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Engine(str, Enum):
    local = "local"
    ray = "ray"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _parse_data(data: list[str]) -> dict[str, str]:
    roots = {}
    for entry in data:
        if "=" not in entry:
            _fail(f"--data expects NAME=ROOT, got '{entry}'")
        name, root = entry.split("=", 1)
        from ..data import get_dataset_spec

        try:
            roots[get_dataset_spec(name).name] = root
        except KeyError as err:
            _fail(str(err).strip('"'))
    return roots
