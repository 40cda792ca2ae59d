"""Runs that survive being stopped: the state a training loop needs to continue exactly, written
atomically at every epoch's end, and the records that let a recipe run skip the units it finished.

One module serves every training command (``train``, ``finetune``, ``meta-train``); docs/training.md
("Stopping and resuming") says what is saved and what a resumed run guarantees.

A run folder holds

* ``run.json`` — the run's identity: a random ``run_id`` and the settings its results depend on (the
  recipe after variants and overrides, the datasets' roots, ``missing``). ``--resume`` refuses a folder
  whose recorded settings differ from the command's, naming the keys (:class:`ResumeMismatchError`).
* per training loop a ``state/`` folder: ``state.json`` (epochs completed, optimizer hyper-parameters,
  Python/NumPy RNG states, the loop's records) and ``epoch-NNNN.safetensors`` (trained parameters,
  optimizer moments, torch RNG states, sampler generators). The tensors are written first under a name
  of their own; ``state.json``, replaced last, is the commit point — a kill at any moment leaves either
  the previous epoch's state or the new one, never a mix.
* per finished unit a ``unit.json`` (its result rows); a resumed run reads them back instead of training
  the unit again.

The optimizer's state goes into the same safetensors file (its tensors keyed by parameter index, its
hyper-parameters in ``state.json``) rather than through ``torch.save``: resuming never unpickles anything
from a run folder, and everything but the tensors stays readable.

Every file is written to a temporary file in its own folder, fsynced, renamed over the target with
``os.replace`` (atomic on POSIX and Windows), and the folder is fsynced so the rename itself is durable.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

STATE_FORMAT = "perceptiq-train-state/1"
RUN_FORMAT = "perceptiq-run/1"
UNIT_FORMAT = "perceptiq-unit/1"
RUN_FILE = "run.json"
STATE_DIR = "state"
STATE_FILE = "state.json"
UNIT_FILE = "unit.json"


class ResumeMismatchError(ValueError):
    """``--resume`` on a run folder whose recorded settings differ from this command's."""


# -- atomic files ------------------------------------------------------------------------------------------
def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """``write(tmp)`` fills a temporary file in ``path``'s folder, which is then fsynced and renamed onto
    ``path``; an interrupted write leaves ``path`` as it was (and at most a ``.NAME.*.tmp`` file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)   # mkstemp creates 0600; run folders are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def atomic_write_json(path: str | Path, payload: Any, indent: int | None = 2) -> Path:
    text = json.dumps(payload, indent=indent, default=_json_default)

    def write(tmp: str) -> None:
        Path(tmp).write_text(text)

    return atomic_write(path, write)


def atomic_write_lines(path: str | Path, records: list[dict]) -> Path:
    """A JSON Lines file with ``records`` (how a resumed loop rewrites its ``epochs.jsonl``)."""
    text = "".join(json.dumps(r, default=_json_default) + "\n" for r in records)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _json_default(value):
    if isinstance(value, (np.generic, torch.Tensor)) and value.ndim == 0:
        return value.item()   # numpy scalars and 0-d tensors in a loop's records
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    return str(value)         # paths and anything else a recipe may hold


def _normalized(value: Any) -> Any:
    """What ``value`` reads back as from JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(value, default=_json_default))


# -- the run's identity ----------------------------------------------------------------------------------
def run_identity(recipe: Mapping, roots: Mapping[str, Any] | None = None, **settings) -> dict:
    """The settings a run's results depend on, as recorded in ``run.json``: the recipe, each dataset's
    root (resolved, so a relative path is the same folder from any working directory) and ``settings``."""
    data = {name: os.path.realpath(str(root)) for name, root in sorted((roots or {}).items())}
    return _normalized({"recipe": dict(recipe), "data": data, **settings})


def differing_keys(recorded: Any, current: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, recorded value, current value)`` for every leaf where two JSON trees differ; a key
    present on one side only counts too (its other side shows as ``absent``)."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(recorded) | set(current), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in recorded:
                out.append((name, _ABSENT, current[key]))
            elif key not in current:
                out.append((name, recorded[key], _ABSENT))
            else:
                out += differing_keys(recorded[key], current[key], name)
        return out
    return [] if recorded == current else [(prefix or "(root)", recorded, current)]


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if value is _ABSENT else json.dumps(value, default=_json_default)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_recorded_run(out_dir: str | Path, identity: Mapping) -> str | None:
    """The ``run_id`` of the run recorded in ``out_dir`` when its settings equal ``identity``; None when
    no run is recorded there (``--resume`` then starts one, as ``score --resume`` does with an absent
    file). Raises :class:`ResumeMismatchError` naming every key that differs. Reads only, so a command
    can call it before any work."""
    path = Path(out_dir) / RUN_FILE
    if not path.is_file():
        log.info("--resume: no run recorded in %s; starting one", out_dir)
        return None
    recorded = json.loads(path.read_text())
    if recorded.get("format") != RUN_FORMAT:
        raise ResumeMismatchError(f"{path}: not a perceptiq run record (format={recorded.get('format')!r})")
    diffs = differing_keys(recorded.get("identity"), _normalized(dict(identity)))
    if diffs:
        listed = "; ".join(f"{key}: recorded {_short(old)}, now {_short(new)}" for key, old, new in diffs)
        raise ResumeMismatchError(
            f"--resume: {out_dir} holds a run started with other settings ({len(diffs)} differ: {listed}); "
            "resume with the same recipe, --set values and --data, or start a new run with --overwrite "
            "or another --output")
    log.info("resuming run %s in %s", recorded["run_id"], out_dir)
    return str(recorded["run_id"])


def record_new_run(out_dir: str | Path, identity: Mapping, *, write: bool = True) -> str:
    """A new ``run_id``, recorded with ``identity`` in ``out_dir/run.json`` (replacing an earlier run's
    record, so none of that run's states or unit results are taken for this run's). ``write=False`` (a
    non-zero torchrun rank) only draws the id."""
    run_id = uuid.uuid4().hex
    if write:
        atomic_write_json(Path(out_dir) / RUN_FILE, {"format": RUN_FORMAT, "run_id": run_id,
                                                     "identity": _normalized(dict(identity))})
    return run_id


# -- random number generators ----------------------------------------------------------------------------
Generators = Mapping[str, "torch.Generator | np.random.Generator"]


def capture_rng(generators: Generators | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Python's, NumPy's (global) and torch's (CPU and every initialised CUDA device) RNG states, plus
    the named ``generators`` (torch or NumPy), as (tensors, JSON-able dict)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = state
    name, keys, position, has_gauss, cached = np.random.get_state()
    info: dict[str, Any] = {"python": _normalized(random.getstate()),
                            "numpy": [name, keys.tolist(), int(position), int(has_gauss), float(cached)],
                            "numpy_generators": {}}
    for key, generator in (generators or {}).items():
        if isinstance(generator, torch.Generator):
            tensors[f"rng.generator.{key}"] = generator.get_state()
        else:
            info["numpy_generators"][key] = generator.bit_generator.state
    return tensors, info


def restore_rng(tensors: Mapping[str, torch.Tensor], info: Mapping, generators: Generators | None = None) -> None:
    """Put back what :func:`capture_rng` captured (into the same named ``generators``)."""
    version, state, gauss = info["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, position, has_gauss, cached = info["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")),
                                       key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    for key, generator in (generators or {}).items():
        if isinstance(generator, torch.Generator):
            generator.set_state(tensors[f"rng.generator.{key}"])
        else:
            generator.bit_generator.state = info["numpy_generators"][key]


# -- the optimizer ---------------------------------------------------------------------------------------
def _split_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """``optimizer.state_dict()`` as safetensors-able tensors (``optimizer.<param>.<key>``: Adam's moments
    and step, SGD's momentum) and a JSON part (param groups, any non-tensor per-parameter state)."""
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param_id, entries in state_dict["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, _normalized({"param_groups": state_dict["param_groups"], "state": scalars})


def _join_optimizer(tensors: Mapping[str, torch.Tensor], info: Mapping) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, param_id, key = name.split(".", 2)
            state.setdefault(int(param_id), {})[key] = value
    for param_id, entries in info["state"].items():
        state.setdefault(int(param_id), {}).update(entries)
    return {"state": state, "param_groups": info["param_groups"]}


# -- a training loop's state -----------------------------------------------------------------------------
@dataclass
class LoopState:
    """What a loop saved at the end of epoch ``epoch`` (1-based count of epochs completed)."""

    epoch: int
    progress: dict                     # the loop's own JSON records (epoch records, steps, failures, ...)
    tensors: dict[str, torch.Tensor]   # everything, by prefix: model., optimizer., rng., extra.
    info: dict                         # optimizer and RNG JSON parts

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors the loop saved as ``extra`` (e.g. the last evaluation's predictions)."""
        return {k[len("extra."):]: v for k, v in self.tensors.items() if k.startswith("extra.")}

    def restore(self, parameters: Mapping[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                generators: Generators | None = None) -> None:
        """Load the trained parameters (in place), the optimizer's state and every RNG state."""
        missing = [n for n in parameters if f"model.{n}" not in self.tensors]
        if missing:
            raise ValueError(f"the saved training state lacks trainable parameter(s) {missing[:5]}")
        with torch.no_grad():
            for name, param in parameters.items():
                param.copy_(self.tensors[f"model.{name}"])
        optimizer.load_state_dict(_join_optimizer(self.tensors, self.info["optimizer"]))
        restore_rng(self.tensors, self.info["rng"], generators)


def save_loop_state(folder: str | Path, *, epoch: int, parameters: Mapping[str, torch.Tensor],
                    optimizer: torch.optim.Optimizer, generators: Generators | None = None,
                    progress: Mapping | None = None, extra: Mapping[str, torch.Tensor] | None = None,
                    run_id: str | None = None) -> Path:
    """Write the state after ``epoch`` completed epochs into ``folder`` (see the module docstring for the
    two-file commit) and remove the previous epoch's tensors. Returns the ``state.json`` path."""
    folder = Path(folder)
    opt_tensors, opt_info = _split_optimizer(optimizer)
    rng_tensors, rng_info = capture_rng(generators)
    tensors = {f"model.{n}": t for n, t in parameters.items()}
    tensors.update(opt_tensors)
    tensors.update(rng_tensors)
    tensors.update({f"extra.{n}": t for n, t in (extra or {}).items()})
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    name = f"epoch-{epoch:04d}.safetensors"
    atomic_write(folder / name, lambda tmp: save_file(tensors, tmp, metadata={"format": STATE_FORMAT}))
    atomic_write_json(folder / STATE_FILE, {
        "format": STATE_FORMAT, "run_id": run_id, "epoch": epoch, "tensors": name,
        "tensors_bytes": (folder / name).stat().st_size,
        "optimizer": opt_info, "rng": rng_info, "progress": dict(progress or {}),
    })
    for old in folder.glob("epoch-*.safetensors"):   # the committed state no longer needs them
        if old.name != name:
            old.unlink(missing_ok=True)
    return folder / STATE_FILE


def load_loop_state(folder: str | Path, *, run_id: str | None = None) -> LoopState | None:
    """The committed state in ``folder``, or None when there is none (or it belongs to another run)."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a perceptiq training state (format={record.get('format')!r})")
    if record.get("run_id") != run_id:
        log.warning("%s belongs to another run (%s, not %s); starting this loop afresh", path,
                    record.get("run_id"), run_id)
        return None
    tensor_path = Path(folder) / record["tensors"]
    if not tensor_path.is_file() or tensor_path.stat().st_size != record["tensors_bytes"]:
        raise ValueError(f"{path}: its tensors {tensor_path.name} are missing or of the wrong size; the state "
                         "folder was changed by hand")
    return LoopState(int(record["epoch"]), record["progress"], load_file(str(tensor_path)),
                     {"optimizer": record["optimizer"], "rng": record["rng"]})


def clear_loop_state(folder: str | Path) -> None:
    """Remove a loop's state folder (a fresh loop, or a unit whose results are written)."""
    shutil.rmtree(folder, ignore_errors=True)


# -- finished units ----------------------------------------------------------------------------------------
def write_unit_result(folder: str | Path, payload: Mapping, *, run_id: str | None) -> Path:
    """Record a finished unit (written after its checkpoint, so its presence means the unit is done)."""
    return atomic_write_json(Path(folder) / UNIT_FILE, {"format": UNIT_FORMAT, "run_id": run_id, **payload})


def read_unit_result(folder: str | Path, *, run_id: str | None) -> dict | None:
    """A finished unit's record for this run, or None (absent, or left by another run)."""
    path = Path(folder) / UNIT_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("format") != UNIT_FORMAT or record.get("run_id") != run_id:
        return None
    return record


__all__ = ["ResumeMismatchError", "LoopState", "atomic_write", "atomic_write_json", "atomic_write_lines",
           "capture_rng", "check_recorded_run", "clear_loop_state", "differing_keys", "load_loop_state",
           "read_unit_result", "record_new_run", "restore_rng", "run_identity", "save_loop_state", "write_unit_result"]
