"""Checkpoints: safetensors with only the trained parameters + a JSON config that rebuilds the rest.

A checkpoint is a pair ``NAME.safetensors`` / ``NAME.json`` (the JSON names the factory, backbone
architecture, starting weights, task, scene, prompts and options). Both are written atomically (temporary
file + rename) so an interrupted save never leaves a half-written checkpoint that later loads.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

CHECKPOINT_FORMAT = "perceptiq-checkpoint/1"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(tensors, config) for a checkpoint given as .safetensors, .json, or a folder holding model.*"""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    stem = path.with_suffix("")
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def is_checkpoint(path: str | Path) -> bool:
    tensors, config = checkpoint_paths(path)
    return config.is_file() and tensors.is_file()


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], config: dict) -> Path:
    """Write ``tensors`` (trained parameters only) and ``config``; the JSON is written last."""
    tensor_path, config_path = checkpoint_paths(path)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{tensor_path.name}.", suffix=".tmp", dir=tensor_path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp,
                  metadata={"format": CHECKPOINT_FORMAT})
        os.chmod(tmp, 0o644)
        os.replace(tmp, tensor_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    payload = {"format": CHECKPOINT_FORMAT, **config}
    atomic_write_bytes(config_path, json.dumps(payload, indent=2, sort_keys=True).encode())
    return tensor_path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    tensor_path, config_path = checkpoint_paths(path)
    if not config_path.is_file():
        raise FileNotFoundError(f"checkpoint config not found: {config_path}")
    if not tensor_path.is_file():
        raise FileNotFoundError(f"checkpoint tensors not found: {tensor_path}")
    config = json.loads(config_path.read_text())
    if config.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{config_path}: not a perceptiq checkpoint (format={config.get('format')!r})")
    return load_file(str(tensor_path), device="cpu"), config
