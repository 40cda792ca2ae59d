"""The peer: pyiqa's CLIP-based metrics (CLIP-IQA, LIQE), timed in the same run on the same JPEG files.

pyiqa is never a dependency of perceptiq. It is installed on first use into its own virtual environment
(default ``~/.cache/perceptiq/pyiqa-venv``; ``$PERCEPTIQ_PYIQA_VENV`` overrides), with the pins that make
pyiqa 0.1.16 install (``setuptools<81`` for its ``pkg_resources`` import, ``openai-clip`` from its sdist
built without isolation). The peer must run on *perceptiq's own torch* (like for like), so the new
environment sees this interpreter's site-packages through a ``.pth`` file placed after its own: pip finds
torch/torchvision already satisfied (nothing is downloaded or replaced; pip never uninstalls outside the
environment it installs into) and installs only pyiqa's other requirements, which shadow the host's.
A marker file written after a successful install makes later runs skip pip entirely.
``pyiqa_driver.py`` (beside this file) runs inside that environment in a subprocess and writes JSON,
which is read back here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PYIQA_VERSION = "0.1.16"
# What the peer venv needs, in install order (each list is one pip call).
PEER_INSTALL_STEPS = (
    ("torch=={torch}", "torchvision=={torchvision}", "setuptools<81", "wheel"),
    ("--no-build-isolation", "openai-clip", f"pyiqa=={PYIQA_VERSION}"),
)
DEFAULT_PEER_METRICS = ("clipiqa", "liqe")
_MARKER = "perceptiq-peer-ready.json"
_HOST_PTH = "perceptiq-host-site-packages.pth"
DRIVER = Path(__file__).with_name("pyiqa_driver.py")


class PeerUnavailable(RuntimeError):
    """The pyiqa environment could not be created or the driver failed; the message says where."""


def default_venv_dir() -> Path:
    override = os.environ.get("PERCEPTIQ_PYIQA_VENV")
    return Path(override) if override else Path.home() / ".cache" / "perceptiq" / "pyiqa-venv"


def _torch_pins() -> dict[str, str]:
    import torch
    import torchvision

    return {"torch": torch.__version__.split("+")[0], "torchvision": torchvision.__version__.split("+")[0]}


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@dataclass
class PeerEnvironment:
    venv: Path
    python: Path
    setup_seconds: float      # 0 when the cached environment was reused
    reused: bool


def ensure_peer_venv(venv: Path | None = None, *, log=print) -> PeerEnvironment:
    """Create (once) the virtual environment with pyiqa; later calls only check the marker."""
    venv = Path(venv) if venv else default_venv_dir()
    python = venv_python(venv)
    pins = _torch_pins()
    marker = venv / _MARKER
    if marker.is_file() and python.is_file():
        recorded = json.loads(marker.read_text())
        if recorded.get("pyiqa") == PYIQA_VERSION and recorded.get("torch") == pins["torch"]:
            return PeerEnvironment(venv, python, 0.0, True)
    start = time.perf_counter()
    log(f"peer: creating {venv} with pyiqa {PYIQA_VERSION} (once; later runs reuse it)")
    venv.parent.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", "--clear", str(venv)], "creating the virtual environment")
    _link_host_site_packages(python)
    for step in PEER_INSTALL_STEPS:
        args = [a.format(**pins) for a in step]
        _run([str(python), "-m", "pip", "install", "--quiet", *args], f"pip install {' '.join(args)}")
    marker.write_text(json.dumps({"pyiqa": PYIQA_VERSION, **pins}))
    return PeerEnvironment(venv, python, time.perf_counter() - start, False)


def host_site_packages() -> list[str]:
    """This interpreter's site-packages folders (where its torch is installed)."""
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(p for p in paths if os.path.isdir(p))


def _link_host_site_packages(python: Path) -> Path:
    """Write a ``.pth`` into the peer venv's site-packages naming the host's: appended to ``sys.path``
    after the venv's own folder, so the host's torch is used and the venv's own packages win."""
    done = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise PeerUnavailable(f"cannot locate the peer venv's site-packages: {done.stderr.strip()[-300:]}")
    pth = Path(done.stdout.strip()) / _HOST_PTH
    pth.write_text("".join(path + "\n" for path in host_site_packages()))
    return pth


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise PeerUnavailable(f"peer setup failed while {what} (exit {done.returncode}):\n" + "\n".join(tail))


def run_peer(image_folder: str | os.PathLike, *, device: str = "cpu", metrics=DEFAULT_PEER_METRICS,
             max_images: int = 0, min_seconds: float = 3.0, threads: int = 0, venv: Path | None = None,
             log=print) -> dict:
    """Time pyiqa ``metrics`` on the JPEGs in ``image_folder``; returns the driver's JSON plus setup facts.

    The driver runs with ``TORCH_HOME`` in a fresh temporary folder and the Hugging Face hub offline,
    so nothing is downloaded and no cache from an earlier real pyiqa use is picked up.
    """
    env_info = ensure_peer_venv(venv, log=log)
    with tempfile.TemporaryDirectory(prefix="perceptiq-peer-") as scratch:
        out = Path(scratch) / "peer.json"
        command = [str(env_info.python), str(DRIVER), "--images", str(image_folder), "--out", str(out),
                   "--metrics", ",".join(metrics), "--weights-dir", str(Path(scratch) / "weights"),
                   "--device", device, "--min-seconds", str(min_seconds), "--max-images", str(max_images),
                   "--threads", str(threads)]
        env = {**os.environ, "TORCH_HOME": str(Path(scratch) / "torch-home"), "HF_HUB_OFFLINE": "1",
               "PYTHONWARNINGS": "ignore"}
        log(f"peer: timing pyiqa {', '.join(metrics)} in {env_info.venv}")
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
            raise PeerUnavailable(f"pyiqa driver failed (exit {done.returncode}):\n" + "\n".join(tail))
        result = json.loads(out.read_text())
    result.update(venv=str(env_info.venv), setup_seconds=env_info.setup_seconds, venv_reused=env_info.reused)
    return result
