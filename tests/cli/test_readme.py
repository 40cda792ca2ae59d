"""README.md's commands work as written.

* CI runs README's two commands (install + score the examples; the test command), word for word.
* Every ``perceptiq`` command line in README parses: the command exists, every option exists, choices
  and types are valid (click parses it without running it).
* The few-shot walk-through (synthesize -> meta-train on the synthetic set -> 50-shot finetune -> score
  with the result) runs as written on a tiny synthesized set: each README line is run with only
  size-reducing options appended (a tiny random backbone, one epoch, one split).
"""
from __future__ import annotations

import csv
import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from perceptiq.cli.main import app

from ..conftest import textured_image

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMAND = typer.main.get_command(app)


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def command_lines(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments dropped, ``a && b`` split."""
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        commands += [part.strip() for part in line.split("&&") if part.strip()]
    return commands


def perceptiq_arguments(command: str) -> list[str] | None:
    """``perceptiq ARGS`` (or ``torchrun ... -m perceptiq ARGS``) -> ARGS; None for other programs."""
    words = shlex.split(command)
    if words and words[0] in ("perceptiq", ".venv/bin/perceptiq"):
        return words[1:]
    if "-m" in words and words[words.index("-m") + 1:words.index("-m") + 2] == ["perceptiq"]:
        return words[words.index("-m") + 2:]
    return None


def readme_perceptiq_commands() -> list[str]:
    found = []
    for block in bash_blocks():
        for command in command_lines(block):
            if " [--" in command:       # the synopsis of `perceptiq score`, not a command
                continue
            if perceptiq_arguments(command) is not None:
                found.append(command)
    return found


def find_block(*needles: str) -> str:
    return next(b for b in bash_blocks() if all(n in b for n in needles))


def test_ci_runs_readmes_two_commands_word_for_word():
    first, tests = (command_lines(block) for block in bash_blocks()[:2])
    assert "pip install" in first[1] and "'.[test]'" not in first[1], "the first command installs no extras"
    assert first[-1].endswith("perceptiq score examples/images --model perceptiq-tiny")
    assert tests[0].endswith("pip install -e '.[test]'") and tests[-1].endswith("pytest -q")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for block in bash_blocks()[:2]:
        assert block.strip() in ci_lines, f".ci/run does not run README's command: {block.strip()}"


def test_readme_has_the_commands_this_test_checks():
    commands = readme_perceptiq_commands()
    assert len(commands) >= 20
    assert any(c.startswith("perceptiq finetune --data csv=my_labels.csv --shots 50") for c in commands)


@pytest.mark.parametrize("command", readme_perceptiq_commands())
def test_every_readme_command_line_parses(command):
    args = perceptiq_arguments(command)
    name, rest = args[0], args[1:]
    assert name in COMMAND.commands, f"README names an unknown command: {command}"
    sub = COMMAND.commands[name]
    with sub.make_context(name, list(rest)) as context:
        assert context.params is not None


# -- the few-shot walk-through, run ----------------------------------------------------------------------
# Appended to README's lines: sizes only (what the model is built from and how long it trains).
TINY_MODEL = ["--set", "model.backbone=test-tiny", "--set", "model.weights=random"]
TINY = {
    "synthesize": ["--types", "darken,contrast_change", "--max-side", "64", "--no-progress"],
    "meta-train": TINY_MODEL + ["--set", "meta.epochs=1", "--set", "meta.workers=0", "--no-progress"],
    "finetune": TINY_MODEL + ["--set", "train.epochs=1", "--set", "train.workers=0", "--max-runs", "1",
                              "--no-progress"],
    "score": ["--no-progress", "--workers", "0"],
}


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{shlex.join(args)}\n{result.output}\n{result.exception!r}"
    return result.output


def test_readme_few_shot_walk_through_runs_as_written(tmp_path, monkeypatch):
    block = find_block("perceptiq synthesize my_photos/", "perceptiq finetune")
    commands = [c for c in command_lines(block) if "tid2013=" not in c]   # needs TID2013/KADID-10k
    assert [perceptiq_arguments(c)[0] for c in commands] == ["synthesize", "meta-train", "finetune", "score"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_photos").mkdir()
    for seed in range(8):                              # 8 references x 2 types x 5 levels = 80 images
        textured_image(seed, (96, 80)).save(tmp_path / "my_photos" / f"p{seed}.png")
    (tmp_path / "new_images").mkdir()
    textured_image(20, (96, 80)).save(tmp_path / "new_images" / "a.png")

    synthesize, meta_train, finetune, score = (perceptiq_arguments(c) for c in commands)
    _run(synthesize + TINY["synthesize"])
    _run(meta_train + TINY["meta-train"])
    assert (tmp_path / "runs" / "grmp-meta" / "model.safetensors").is_file()
    # "my_labels.csv": your own labelled images; here the synthetic set's labels, seen from the working folder
    with open(tmp_path / "synthetic" / "labels.csv", newline="") as source:
        rows = list(csv.DictReader(source))
    with open(tmp_path / "my_labels.csv", "w", newline="") as target:
        writer = csv.DictWriter(target, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "path": f"synthetic/{r['path']}", "ref": f"synthetic/{r['ref']}"} for r in rows)
    output = _run(finetune + TINY["finetune"])
    assert "| csv |" in output
    units = [p.parent.name for p in (tmp_path / "runs" / "grmp-fewshot").glob("*/model.safetensors")]
    assert len(units) == 1 and units[0].startswith("csv-k50")
    scored = _run([a.replace("<unit>", units[0]) for a in score] + TINY["score"])
    assert "new_images/a.png" in scored


def test_torch_is_a_tested_range_that_holds_the_versions_readme_installs():
    """pyproject depends on a torch / torchvision range, not a pin (``pip install perceptiq`` must not
    replace a user's torch), and the versions README's first command installs (what CI tests) are in it."""
    import tomllib

    from packaging.requirements import Requirement

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    specs = {req.name: req.specifier for req in map(Requirement, dependencies)}
    installed = dict(re.findall(r"\b(torch|torchvision)==([\w.]+)", bash_blocks()[0]))
    assert set(installed) == {"torch", "torchvision"}, bash_blocks()[0]
    for name, version in installed.items():
        spec = specs[name]
        assert not any(s.operator in ("==", "===") for s in spec), f"{name} is pinned: {spec}"
        assert {s.operator for s in spec} >= {">=", "<"}, f"{name} needs a lower and an upper bound: {spec}"
        assert spec.contains(version), f"README installs {name} {version}, outside pyproject's {spec}"
