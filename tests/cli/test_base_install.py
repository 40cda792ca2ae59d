"""README's first command installs perceptiq without extras and scores the example images: scoring must
neither need nor import anything an extra brings (the HTTP service, Ray, plots, scikit-image, test tools).

A fresh interpreter runs ``perceptiq score`` with those packages made unimportable (as in a base install:
a finder raises ImportError for them, in the decode workers too, which are forked from it) and reports
which of them ended up in ``sys.modules``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Top-level modules of the extras (pyproject.toml [project.optional-dependencies]); pydantic and httpx are
# not here: typer and huggingface_hub, base dependencies, bring them.
EXTRA_MODULES = ("fastapi", "fastapi_offline", "uvicorn", "multipart", "python_multipart", "starlette",
                 "matplotlib", "skimage", "ray", "pyarrow", "pillow_heif", "selenium", "pytest")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "images"

_PROBE = r"""
import importlib.abc, json, sys
BLOCKED = set(json.loads(sys.argv[1]))

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in a base install)")
        return None

for name in list(sys.modules):          # nothing of an extra may be loaded already
    if name.split(".")[0] in BLOCKED:
        del sys.modules[name]
sys.meta_path.insert(0, NotInstalled())
sys.argv = ["perceptiq", *sys.argv[2:]]
from perceptiq.cli.main import main
try:
    main()
    code = 0
except SystemExit as exit_:
    code = exit_.code or 0
print(json.dumps({"code": code, "loaded": sorted({m.split(".")[0] for m in sys.modules} & BLOCKED)}))
"""


def _run_without_extras(args: list[str], cwd: Path) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(EXTRA_MODULES), *args], capture_output=True,
                         text=True, env=env, cwd=cwd, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stdout + out.stderr


def test_score_runs_and_imports_nothing_from_the_extras(tmp_path):
    report, text = _run_without_extras(["score", str(EXAMPLES), "--model", "perceptiq-tiny", "--no-progress",
                                        "-o", str(tmp_path / "scores.csv")], tmp_path)
    assert report == {"code": 0, "loaded": []}, text
    rows = (tmp_path / "scores.csv").read_text().splitlines()
    assert rows[0].startswith("path,score") and len(rows) == 1 + len(list(EXAMPLES.glob("*.jpg")))
    assert "scored 7, failed 0" in text


def test_the_probe_would_see_an_extra_being_imported(tmp_path):
    """The check can fail: a command that needs an extra (serve) is refused with the install hint."""
    report, text = _run_without_extras(["serve", "--model", "perceptiq-tiny", "--port", "0"], tmp_path)
    assert report["code"] == 2 and "pip install 'perceptiq[serve]'" in text


def test_finetune_plots_without_matplotlib_are_skipped_with_a_note(tmp_path, monkeypatch, capsys):
    """README's few-shot command on the base install: the run and its results are complete, the Fig. 4
    PNGs need the plots extra; the command says so instead of ending in a traceback."""
    from perceptiq.cli.grmp import write_plots

    run = tmp_path / "csv-k50-seed0"
    run.mkdir()
    (run / "epochs.jsonl").write_text('{"epoch": 0, "metrics": {"csv": {"srcc": 0.5}}}\n')
    monkeypatch.setitem(sys.modules, "matplotlib", None)          # as in a base install: import fails
    write_plots([run], tmp_path)
    assert "plots skipped: they need matplotlib (pip install 'perceptiq[plots]')" in capsys.readouterr().err
    assert not list(run.glob("*.png"))
    monkeypatch.undo()                                            # matplotlib importable again
    write_plots([run], tmp_path)                                  # with the extra: the PNG is written
    assert [p.name for p in run.glob("*.png")] and "plot(s) written" in capsys.readouterr().out
