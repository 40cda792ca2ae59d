"""``perceptiq`` command line: the command table. Each command lives in a module of this package.

Rules (docs/cli.md): a command module imports only the standard library, typer and ``.common`` at module
level — everything else (torch, open_clip, numpy, the training code) inside the command function — so
``perceptiq --help`` and the listing commands never pay for torch. Options follow one convention, built
from the factories in ``.common``. ``tests/cli/test_conventions.py`` checks both.

To add a command: write ``def NAME_command(...)`` in a module here (a new one per command group), add a
line to ``COMMANDS`` below, and document it in README/docs.
"""
from __future__ import annotations

import importlib

import typer

#: (command name, module in perceptiq.cli, function), in the order ``perceptiq --help`` lists them.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("score", "score", "score_command"),
    ("models", "catalog", "models_command"),
    ("datasets", "catalog", "datasets_command"),
    ("recipes", "catalog", "recipes_command"),
    ("evaluate", "evaluate", "evaluate_command"),
    ("splits", "data", "splits_command"),
    ("synthesize", "data", "synthesize_command"),
    ("fetch-photos", "photos", "fetch_photos_command"),
    ("train", "train", "train_command"),
    ("meta-train", "grmp", "meta_train_command"),
    ("finetune", "grmp", "finetune_command"),
    ("experts", "gamma", "experts_command"),
    ("reproduce", "reproduce", "reproduce_command"),
    ("info", "gamma", "info_command"),
    ("bench", "bench", "bench_command"),
    ("serve", "serve", "serve_command"),
    ("build-tiny", "builtin", "build_tiny_command"),
    ("reproduce-builtin", "builtin", "reproduce_builtin_command"),
)

# rich_markup_mode=None: plain help text. Rich markup would eat brackets such as 'perceptiq[ray]', and
# rich itself costs start-up time that --help does not need.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="perceptiq: how good an image looks (CLIP-based quality and aesthetics assessment). "
                       "Conventions shared by every command: docs/cli.md.")


@app.callback()
def _before_every_command() -> None:
    from .common import configure_logging

    configure_logging()


for _name, _module, _function in COMMANDS:
    app.command(_name)(getattr(importlib.import_module(f"{__package__}.{_module}"), _function))


def main() -> None:
    """Console entry point (``perceptiq``)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
