"""Weight sources for CLIP backbones: where the numbers come from, kept apart from the architecture.

A weight source is one of

* ``random`` — the architecture's own random initialisation (seeded by the caller); never touches disk or network;
* a local file — OpenAI's TorchScript ``.pt``, an open_clip state dict (``.pt``/``.pth``/``.bin``), a
  ``.safetensors`` file, or a UniQA CLIP-B/16 checkpoint (``uniqa:PATH`` or auto-detected);
* an open_clip pretrained tag such as ``openai`` — resolved to a file in open_clip's cache, downloaded
  only when the hub is reachable.

Files are never unpickled: state dicts go through ``torch.load(weights_only=True)`` or safetensors, and
TorchScript archives through ``torch.jit.load``, whose deserializer only rebuilds tensors and TorchScript
code, not arbitrary Python objects.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Mapping

import torch

log = logging.getLogger(__name__)

WEIGHTS_ENV_VAR = "PERCEPTIQ_WEIGHTS"


class WeightsNotFoundError(FileNotFoundError):
    """Raised when a weight source names a file that is not here and cannot be fetched."""


class WeightsChecksumError(ValueError):
    """Raised when a known file's sha256 differs from the recorded one."""


@dataclass(frozen=True)
class KnownWeightFile:
    filename: str
    arch: str
    tag: str
    format: str
    quick_gelu: bool
    sha256: str | None


@dataclass(frozen=True)
class WeightSource:
    """A resolved weight source.

    kind: "random" | "file" | "tag"
    path: the local file for "file" (and for "tag" once resolved)
    tag: the open_clip pretrained tag for "tag"
    format: "auto" | "openai-torchscript" | "state-dict" | "safetensors" | "uniqa"
    """

    kind: str
    spec: str
    path: Path | None = None
    tag: str | None = None
    format: str = "auto"

    @property
    def is_random(self) -> bool:
        return self.kind == "random"


@lru_cache(maxsize=1)
def known_weight_files() -> dict[str, KnownWeightFile]:
    """The table of weight files perceptiq knows by name (``configs/known_weights.json``)."""
    text = resources.files("perceptiq.backbones").joinpath("configs/known_weights.json").read_text()
    table = json.loads(text)["files"]
    return {row["filename"]: KnownWeightFile(**row) for row in table}


def parse_weight_source(spec: str | os.PathLike | None) -> WeightSource:
    """Turn a ``--weights`` value (or ``$PERCEPTIQ_WEIGHTS``, or the default ``openai``) into a source.

    A value that looks like a path (has a separator or a file suffix, or exists) is a file; ``random``
    is random initialisation; ``uniqa:PATH`` marks a UniQA checkpoint; anything else is a pretrained tag.
    """
    if spec is None or str(spec) == "":
        spec = os.environ.get(WEIGHTS_ENV_VAR) or "openai"
    spec = str(spec)
    if spec == "random":
        return WeightSource(kind="random", spec=spec)
    if spec.startswith("uniqa:"):
        return WeightSource(kind="file", spec=spec, path=Path(spec[len("uniqa:"):]).expanduser(), format="uniqa")
    looks_like_path = (
        os.sep in spec
        or "/" in spec
        or Path(spec).suffix.lower() in {".pt", ".pth", ".bin", ".safetensors", ".ckpt"}
        or Path(spec).exists()
    )
    if looks_like_path:
        path = Path(spec).expanduser()
        fmt = "safetensors" if path.suffix.lower() == ".safetensors" else "auto"
        return WeightSource(kind="file", spec=spec, path=path, format=fmt)
    return WeightSource(kind="tag", spec=spec, tag=spec)


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_known_file(path: Path) -> KnownWeightFile | None:
    """Check a file against the recorded sha256 if its name is known; return its table row (or None)."""
    known = known_weight_files().get(path.name)
    if known is None or known.sha256 is None:
        return known
    actual = sha256_of(path)
    if actual != known.sha256:
        raise WeightsChecksumError(
            f"{path}: sha256 {actual} does not match the recorded {known.sha256} for {known.filename} "
            f"({known.arch}, {known.tag}); the file is corrupt, truncated or not the published one."
        )
    return known


def _hub_reachable(host: str = "huggingface.co", port: int = 443, timeout_s: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _cached_tag_file(pretrained_cfg: Mapping, cache_dir: str | None) -> Path | None:
    """Where open_clip would have cached a tag's file, if it is there already (no network)."""
    hf_hub = pretrained_cfg.get("hf_hub", "")
    if hf_hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo_id, filename = os.path.split(hf_hub.rstrip("/")) if not hf_hub.endswith("/") else (hf_hub.rstrip("/"), "")
            candidates = [filename] if filename else [
                "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin"]
            for name in candidates:
                hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
                if isinstance(hit, str) and Path(hit).is_file():
                    return Path(hit)
    url = pretrained_cfg.get("url", "")
    if url:
        root = Path(cache_dir or os.path.expanduser("~/.cache/clip"))
        candidate = root / os.path.basename(url)
        if candidate.is_file():
            return candidate
    return None


def resolve_tag(arch: str, tag: str, cache_dir: str | None = None) -> tuple[Path, Mapping]:
    """Find (or download, where the hub is reachable) the file for an open_clip pretrained tag.

    Fails within seconds, naming the missing file and the ways to provide it, when the file is neither
    cached nor downloadable.
    """
    import open_clip
    from open_clip.pretrained import download_pretrained

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise WeightsNotFoundError(
            f"'{tag}' is neither a file nor a known pretrained tag for {arch}. "
            f"Tags open_clip knows for {arch}: {', '.join(tags) or 'none'}; "
            "or pass a local checkpoint path, or 'random'."
        )
    cached = _cached_tag_file(cfg, cache_dir)
    if cached is not None:
        return cached, cfg
    if not _hub_reachable():
        url = cfg.get("url") or ""
        filename = os.path.basename(url) if url else cfg.get("hf_hub", "")
        raise WeightsNotFoundError(
            f"Weights for {arch} '{tag}' are not cached here and the model hub cannot be reached.\n"
            f"  missing file: {filename}" + (f" (from {url})" if url else "") + "\n"
            f"  provide it with: --weights /path/to/{os.path.basename(url) or 'checkpoint.pt'}  "
            f"(or export {WEIGHTS_ENV_VAR}=/path/to/file), or use --weights random to exercise the pipeline."
        )
    path = download_pretrained(cfg, cache_dir=cache_dir)
    if not path:
        raise WeightsNotFoundError(f"open_clip could not download weights for {arch} '{tag}'.")
    return Path(path), cfg


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())


_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "clip", "clip_model")
_PREFIXES = ("module.", "clip_model.", "clip.", "model.")
_TORCHSCRIPT_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


def unwrap_state_dict(obj) -> dict[str, torch.Tensor]:
    """Peel training-script wrappers (``{"state_dict": ...}``, ``module.`` prefixes) off a checkpoint."""
    for _ in range(3):
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is not None and not any(isinstance(v, torch.Tensor) for v in obj.values()):
                obj = inner
                continue
        break
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    for key in _TORCHSCRIPT_EXTRA_KEYS:
        state.pop(key, None)
    return state


def read_state_dict(path: Path, fmt: str = "auto") -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a CLIP state dict without unpickling arbitrary objects."""
    if not path.is_file():
        raise WeightsNotFoundError(
            f"weights file not found: {path}. Pass an existing checkpoint with --weights or "
            f"${WEIGHTS_ENV_VAR}, an open_clip tag such as 'openai', or 'random'."
        )
    if fmt == "safetensors" or path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return unwrap_state_dict(load_file(str(path), device="cpu"))
    if fmt in ("auto", "openai-torchscript") and _is_torchscript(path):
        module = torch.jit.load(str(path), map_location="cpu")
        return unwrap_state_dict(module.state_dict())
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(
            f"{path}: cannot be read as a state dict with weights_only=True ({exc}). perceptiq never "
            "unpickles arbitrary objects; re-save the checkpoint as a plain state dict or .safetensors."
        ) from exc
    return unwrap_state_dict(obj)
