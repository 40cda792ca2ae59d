"""README.md's commands work as written: CI runs README's two commands (install + score the examples; the
test command), word for word."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


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


def test_ci_runs_readmes_two_commands_word_for_word():
    first, tests = (command_lines(block) for block in bash_blocks()[:2])
    assert "pip install" in first[1] and "'.[test]'" not in first[1], "the first command installs no extras"
    assert first[-1].endswith("perceptiq score examples/images --model perceptiq-tiny")
    assert tests[0].endswith("pip install -e '.[test]'") and tests[-1].endswith("pytest -q")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for block in bash_blocks()[:2]:
        assert block.strip() in ci_lines, f".ci/run does not run README's command: {block.strip()}"
