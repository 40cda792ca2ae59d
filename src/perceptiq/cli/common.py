"""What every command shares: the option convention (docs/cli.md), choice enums, errors, --data parsing.

Each shared concept has exactly one option factory here, so the same concept has the same name, short
flag, choices and help in every command. This module imports only the standard library and typer: the
command modules import it at start-up, before anything knows which command will run.
"""
from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import NoReturn, Optional

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


class Missing(str, Enum):
    error = "error"
    skip = "skip"


class SplitMode(str, Enum):
    """Split modes of ``perceptiq.data.splits`` (``auto``: the dataset's default, see ``default_split_mode``)."""
    auto = "auto"
    random = "random"
    by_reference = "by_reference"
    k_shot = "k_shot"
    subset_fraction = "subset_fraction"
    whole_test = "whole_test"
    whole_train = "whole_train"


def configure_logging() -> None:
    """perceptiq's own progress lines at INFO on stderr; every other library's only from WARNING up (open_clip
    logs each model it builds, at INFO, on the root logger). Runs before every command (``cli/main.py``)."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger().setLevel(logging.WARNING)      # also where a library had lowered it
    logging.getLogger("perceptiq").setLevel(logging.INFO)


def value(choice: Optional[Enum]) -> Optional[str]:
    """The string of a choice option (None stays None)."""
    return None if choice is None else choice.value


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit (2: the command line or its inputs are wrong)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def error_text(err: BaseException) -> str:
    """An exception's message without the quotes ``KeyError`` adds."""
    return str(err).strip('"')


def parse_data(data: list[str], *, exactly_one: bool = False) -> dict[str, str]:
    """``["koniq10k=/data/koniq", ...]`` -> ``{"koniq10k": "/data/koniq"}`` (names resolved, aliases allowed)."""
    if exactly_one and len(data) != 1:
        fail(f"give exactly one --data NAME=ROOT (got {len(data)})")
    roots = {}
    for entry in data:
        if "=" not in entry:
            fail(f"--data expects NAME=ROOT, got '{entry}' (e.g. --data koniq10k=/data/koniq, "
                 "--data csv=labels.csv; `perceptiq datasets` lists the names)")
        name, root = entry.split("=", 1)
        from ..data.registry import get_dataset_spec

        try:
            roots[get_dataset_spec(name).name] = root
        except KeyError as err:
            fail(error_text(err))
    return roots


def check_output_file(path: Optional[Path], *, suffixes: tuple[str, ...], overwrite: bool = False,
                      resume: Optional[bool] = None, what: str = "--output") -> None:
    """Refuse, before any work starts, an output file that cannot be written or would be lost.

    The suffix must be one of ``suffixes``; the folder must exist or be creatable and be writable; an
    existing file is refused unless ``--overwrite`` (start afresh) or ``--resume`` (append) says what to do.
    ``resume`` is None for commands that have no ``--resume``.
    """
    if path is None:
        return
    if path.suffix.lower() not in suffixes:
        fail(f"{what} {path}: unknown file type '{path.suffix or '(none)'}'; use {' or '.join(suffixes)}")
    if path.is_dir():
        fail(f"{what} {path} is a folder; give a file ({' or '.join(suffixes)})")
    if resume and overwrite:
        fail("--resume and --overwrite contradict each other: choose one")
    if path.exists() and not (overwrite or resume):
        fail(f"{what} {path} exists; add --overwrite to replace it"
             + (" or --resume to continue it" if resume is not None else ""))
    _check_writable_folder(path.parent, what, path)


def check_output_folder(path: Path, *, overwrite: bool = False, what: str = "--output",
                        resume: Optional[bool] = None) -> None:
    """Refuse, before any work starts, an output folder that holds something or cannot be written.

    ``resume`` (None for commands without ``--resume``): continuing what the folder holds is the
    caller's to check; here a non-empty folder is accepted and only contradictory flags are refused.
    """
    if path.exists() and not path.is_dir():
        fail(f"{what} {path} is a file; give a folder")
    if resume and overwrite:
        fail("--resume and --overwrite contradict each other: choose one")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        fail(f"{what} {path} exists and is not empty; add --overwrite to write into it"
             + (" or --resume to continue it" if resume is not None else ""))
    _check_writable_folder(path, what, path)


def _check_writable_folder(folder: Path, what: str, target: Path) -> None:
    probe = folder
    while not probe.exists():  # the nearest existing ancestor decides whether the folder can be made
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        fail(f"{what} {target}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        fail(f"{what} {target}: cannot write in {probe} (permission denied)")


# -- the option convention (docs/cli.md): one factory per concept -----------------------------------------
def output_option(help: str, default=None, **extra):
    """``--output/-o``: where a command writes (a file or a folder, as its help says)."""
    extra.setdefault("metavar", "PATH")
    return typer.Option(default, "--output", "-o", help=help, **extra)


def overwrite_option():
    return typer.Option(False, "--overwrite/--no-overwrite", help="Replace an existing --output.")


def resume_option(help: str):
    """``--resume/--no-resume``: continue what an existing ``--output`` holds instead of refusing it."""
    return typer.Option(False, "--resume/--no-resume", help=help)


def progress_option():
    return typer.Option(True, "--progress/--no-progress", help="Show progress on stderr.")


def data_option(help: str = "NAME=ROOT of a dataset (repeatable); `perceptiq datasets` lists the names "
                            "and layouts (csv=labels.csv for a generic CSV).", default=None):
    return typer.Option([] if default is None else default, "--data", help=help, show_default=False,
                        metavar="NAME=ROOT")


def missing_option():
    return typer.Option(Missing.error, "--missing", help="Listed but absent images: error (stop, naming "
                                                         "them) or skip (leave them out).")


def model_option(default: Optional[str] = "zero-shot", help: str = "Registered model name (`perceptiq "
                 "models`) or a checkpoint path (.safetensors, or a run folder holding model.safetensors)."):
    return typer.Option(default, "--model", help=help, metavar="NAME|CHECKPOINT")


def backbone_option():
    return typer.Option(None, "--backbone", metavar="ARCH",
                        help="open_clip architecture, e.g. ViT-B-16 or test-tiny (default: the model's; "
                             "`perceptiq models --archs`).")


def weights_option(help: str = "openai | other open_clip tag | FILE | uniqa:FILE | random "
                               "(default: $PERCEPTIQ_WEIGHTS, else the model's)."):
    return typer.Option(None, "--weights", help=help, metavar="WEIGHTS")


def task_option(help: str = "What to assess (default: the model's first task)."):
    return typer.Option(None, "--task", help=help, case_sensitive=False)


def scene_option(help: str = "Scene prompts (Gamma Table 11); auto picks the scene per image."):
    return typer.Option(None, "--scene", help=help, case_sensitive=False)


def device_option():
    return typer.Option(Device.auto, "--device", help="auto = cuda when available, else cpu.",
                        case_sensitive=False)


def precision_option():
    return typer.Option(Precision.auto, "--precision", help="auto = bf16 where the hardware does it natively, "
                                                            "else fp32.", case_sensitive=False)


def batch_size_option(default: int = 32):
    return typer.Option(default, "--batch-size", min=1, help="Images per forward pass.", metavar="N")


def workers_option():
    return typer.Option(None, "--workers", min=0, metavar="N", help="Image decode worker processes (default: automatic: "
                                                       "on a CPU model 0, on a GPU one all cores but one; 0 = "
                                                       "decode in this process, one thread per core, between "
                                                       "model calls).")


def splits_option(help: str, default=None, **extra):
    extra.setdefault("metavar", "N")
    return typer.Option(default, "--splits", help=help, **extra)


def seed_option(default: int = 0, help: str = "Seed of the first split (split i uses seed + i)."):
    return typer.Option(default, "--seed", help=help, metavar="N")


def recipe_option(default=..., help: str = "Shipped recipe name (`perceptiq recipes`) or a YAML file."):
    return typer.Option(default, "--recipe", help=help, metavar="NAME|FILE")


def variant_option(help: str = "A named variant of the recipe (e.g. an ablation row; `perceptiq recipes` "
                               "lists them)."):
    return typer.Option(None, "--variant", help=help, metavar="NAME")


def set_option():
    return typer.Option([], "--set", help="Override a recipe value: section.key=value (repeatable), e.g. "
                                          "train.epochs=2.", show_default=False, metavar="KEY=VALUE")


def json_option():
    return typer.Option(False, "--json/--no-json", help="Machine-readable JSON instead of text.")


def view_option():
    return typer.Option(None, "--view", metavar="VIEW",
                        help="How a file becomes model input: resize (short side 224, centre crop), "
                             "crops:N[,random][,resize=S][,seed=K] (N native-resolution 224 crops; the score "
                             "is their mean) or full[,max=PIXELS] (the whole image at native resolution); "
                             "default: the model's (`perceptiq models`). See docs/inference.md, Views.")


def check_view(view: Optional[str]) -> Optional[str]:
    """``--view`` parsed before any model loads: its canonical spelling, or exit naming the grammar."""
    if view is None:
        return None
    from ..imaging.views import ViewError, parse_view

    try:
        return str(parse_view(view))
    except ViewError as err:
        fail(f"--view {view}: {err}")
