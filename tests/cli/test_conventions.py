"""The command line's structure: one option convention for every command (docs/cli.md) and start-up that
imports only what a command uses. Structural checks, not timings: the figures are in docs/cli.md."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from perceptiq.cli.main import COMMANDS, app

ROOT_COMMAND = typer.main.get_command(app)
COMMAND_OBJECTS = {name: ROOT_COMMAND.commands[name] for name, _, _ in COMMANDS}

# Commands that do work long enough to want a progress display.
LONG_RUNNING = {"score", "evaluate", "synthesize", "train", "meta-train", "finetune", "experts", "bench",
                "build-tiny"}
# Names the convention replaced: each concept has one name (left) everywhere.
RETIRED_NAMES = {"--out": "--output", "--n-splits": "--splits", "--dataset": "--data", "--root": "--data",
                 "--arch": "--backbone", "--decode-workers": "--workers", "--base-seed": "--seed"}
# Concepts whose option must look the same (choices, metavar, flag form) in every command that has it; the
# first ones also with the same help text.
SAME_HELP = ("--device", "--precision", "--progress", "--overwrite", "--missing", "--workers", "--set")
SHARED = SAME_HELP + ("--variant", "--recipe", "--model", "--data", "--output", "--splits", "--seed", "--task",
                      "--scene", "--batch-size", "--backbone", "--weights", "--resume")
CHOICES = {"--device": ["auto", "cpu", "cuda"], "--precision": ["auto", "fp32", "bf16"],
           "--task": ["quality", "aesthetics"], "--scene": ["natural", "ai-generated", "face", "underwater", "auto"],
           "--missing": ["error", "skip"], "--engine": ["local", "ray"]}


def _options(command) -> list:
    # typer builds on its own copy of click (typer._click): compare by kind, not by class
    return [p for p in command.params if p.param_type_name == "option" and p.name != "help"]


def _is_choice(param) -> bool:
    return param.type_descriptor.is_choice


def _choices(param) -> list[str] | None:
    if not _is_choice(param):
        return None
    return [str(getattr(c, "value", c)) for c in param.type_descriptor.choices]


def _by_name(command) -> dict:
    return {opt: p for p in _options(command) for opt in p.opts if opt.startswith("--")}


def test_every_registered_command_is_listed_by_help():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name, _, _ in COMMANDS:
        assert f"  {name} " in result.output


@pytest.mark.parametrize("name", sorted(COMMAND_OBJECTS))
def test_every_option_has_help_a_metavar_and_no_retired_name(name):
    command = COMMAND_OBJECTS[name]
    assert command.help, f"{name} has no help text"
    for param in _options(command):
        assert param.help and param.help.strip(), f"{name} {param.opts} has no help text"
        for opt in param.opts:
            assert opt not in RETIRED_NAMES, f"{name} {opt}: the convention's name is {RETIRED_NAMES[opt]}"
        if param.is_flag:
            # a flag is a --x/--no-x pair (never a value that reads <bool>)
            assert param.secondary_opts, f"{name} {param.opts}: write the flag as --x/--no-x"
        elif not _is_choice(param):
            assert param.metavar, f"{name} {param.opts} has no metavar (help would show a Python type)"


@pytest.mark.parametrize("name", sorted(COMMAND_OBJECTS))
def test_outputs_are_output_o_with_overwrite(name):
    options = _by_name(COMMAND_OBJECTS[name])
    for opt, param in options.items():
        if opt.startswith("--out"):
            assert opt == "--output" and "-o" in param.opts, f"{name} {opt}: outputs are --output/-o"
    if "--output" in options:
        assert "--overwrite" in options, f"{name} writes --output but has no --overwrite"


@pytest.mark.parametrize("name", sorted(LONG_RUNNING))
def test_long_running_commands_have_progress(name):
    param = _by_name(COMMAND_OBJECTS[name]).get("--progress")
    assert param is not None and param.secondary_opts == ["--no-progress"], name


def test_shared_concepts_have_the_same_option_everywhere():
    for opt in SHARED:
        seen = {}
        for name, command in COMMAND_OBJECTS.items():
            param = _by_name(command).get(opt)
            if param is not None:
                choices = _choices(param)
                seen[name] = (param.help if opt in SAME_HELP else None, choices and tuple(choices), param.metavar,
                              tuple(param.secondary_opts), tuple(sorted(param.opts)))
        assert len(seen) >= 2, f"{opt} is not shared"
        assert len(set(seen.values())) == 1, f"{opt} differs between commands: {seen}"


def test_choice_options_are_checked_everywhere():
    for name, command in COMMAND_OBJECTS.items():
        for opt, param in _by_name(command).items():
            if opt in CHOICES:
                assert _is_choice(param), f"{name} {opt} is a free string"
                assert _choices(param) == CHOICES[opt], f"{name} {opt}"
    bad = CliRunner().invoke(app, ["score", ".", "--device", "gpu"])
    assert bad.exit_code == 2 and "gpu" in bad.output


def test_help_text_is_rendered_as_written():
    for name in COMMAND_OBJECTS:
        text = CliRunner().invoke(app, [name, "--help"], terminal_width=200).output
        assert "<bool>" not in text and "<str>" not in text and "<int" not in text, name
    assert "pip install 'perceptiq[ray]'" in CliRunner().invoke(app, ["score", "--help"], terminal_width=200).output


# -- start-up imports ----------------------------------------------------------------------------------------
_PROBE = r"""
import json, sys
from typer.testing import CliRunner
from perceptiq.cli.main import COMMANDS, app
results = {}
for args in [["--help"]] + [[name, "--help"] for name, _, _ in COMMANDS] + [["models"], ["models", "--json"], ["recipes"]]:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
heavy = ("torch", "torchvision", "open_clip", "numpy", "scipy", "PIL", "rich", "fastapi", "ray")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def test_help_and_listing_commands_import_no_torch():
    """``--help`` of every command, ``models`` and ``recipes`` run without importing torch, open_clip, numpy
    or rich (a fresh interpreter: this test process has them all loaded)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_models_lists_the_builtin_model_with_its_shipped_weights():
    result = CliRunner().invoke(app, ["models", "--json"])
    specs = {s["name"]: s for s in json.loads(result.output)}
    assert {"zero-shot", "zero-shot-antonym", "gamma", "grmp-iqa", "perceptiq-tiny"} <= set(specs)
    assert specs["perceptiq-tiny"]["default_weights"] == "shipped"
    assert "weights random" not in CliRunner().invoke(app, ["models"]).output
