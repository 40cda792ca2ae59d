"""``perceptiq-tiny``: the built-in model whose weights ship inside the package (no download, no flags).

It is a GRMP-IQA model (``GRMPModel``: p(high quality | x), GRMP Eq. 2) on a small open_clip CLIP
(``backbones/configs/perceptiq-tiny.json``) trained from scratch by ``perceptiq build-tiny`` on synthetic
distortions of public-domain images (docs/builtin-model.md). The shipped checkpoint is an ordinary
perceptiq checkpoint pair, ``weights/perceptiq-tiny.safetensors`` + ``.json``, holding *every* tensor of
the model (backbone and prompts; the JSON's backbone weights are ``random`` because the tensors replace
them all), so ``build_model(<that path>)`` works like any trained checkpoint.

By name, ``build_model("perceptiq-tiny")`` builds the architecture and the factory below loads the shipped
tensors into it. The backbone alone is available to other models as

    create_backbone("perceptiq-tiny", weights=str(builtin_backbone_weights()))

(an open_clip state dict extracted once from the shipped checkpoint into the user cache).
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch

from ..backbones import ClipBackbone, sha256_of
from ..backbones.stems import check_shipped_stem, resolve_stem
from .checkpoints import load_checkpoint
from .grmp import GRMPModel
from .registry import register_factory

BUILTIN_NAME = "perceptiq-tiny"
BUILTIN_ARCH = "perceptiq-tiny"
BUILTIN_FACTORY = "perceptiq_tiny"
BUILTIN_FILE_STEM = "perceptiq-tiny"
# every model whose weights ship in perceptiq/weights/<name>.safetensors: the current built-in model and
# its predecessor (kept as the baseline of `perceptiq reproduce-builtin` and for older tests)
SHIPPED_MODELS = ("perceptiq-tiny", "perceptiq-tiny-v1")
BACKBONE_PREFIX = "backbone.clip."     # GRMPModel state_dict keys of the CLIP weights
CACHE_ENV_VAR = "PERCEPTIQ_CACHE"      # where the extracted backbone file goes (default ~/.cache/perceptiq)


class BuiltinWeightsError(RuntimeError):
    """The shipped weights are missing, altered, or asked to combine with other backbone weights."""


def builtin_weights_dir() -> Path:
    """The package folder holding the shipped checkpoint (``perceptiq/weights``)."""
    return Path(str(resources.files("perceptiq").joinpath("weights")))


def _check_shipped(name: str) -> str:
    if name not in SHIPPED_MODELS:
        raise BuiltinWeightsError(f"no shipped model '{name}': the package ships {', '.join(SHIPPED_MODELS)}")
    return name


def builtin_checkpoint_path(name: str = BUILTIN_NAME) -> Path:
    """``perceptiq/weights/<name>.safetensors`` (its config is the ``.json`` beside it)."""
    path = builtin_weights_dir() / f"{_check_shipped(name)}.safetensors"
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise BuiltinWeightsError(
            f"the built-in model's weights are not installed: {path} (and its .json) should ship with "
            "perceptiq. Reinstall the package, or rebuild them with `perceptiq build-tiny`.")
    return path


def builtin_config(name: str = BUILTIN_NAME) -> dict:
    """The shipped checkpoint's JSON config (architecture, options, recipe, sha256, held-out metrics)."""
    return json.loads(builtin_checkpoint_path(name).with_suffix(".json").read_text())


@lru_cache(maxsize=4)
def _verified_tensors(path: str, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    if expected_sha256 is not None:
        actual = sha256_of(Path(path))
        if actual != expected_sha256:
            raise BuiltinWeightsError(f"{path}: sha256 {actual} differs from the recorded {expected_sha256} "
                                      "in its .json; the file is corrupt or was replaced without its config")
    tensors, _ = load_checkpoint(path)
    return tensors


def builtin_tensors(name: str = BUILTIN_NAME) -> dict[str, torch.Tensor]:
    """Every tensor of the shipped model by ``GRMPModel`` state_dict key (checked against the sha256)."""
    path = builtin_checkpoint_path(name)
    return _verified_tensors(str(path), builtin_config(name).get("sha256"))


def builtin_backbone_state_dict(name: str = BUILTIN_NAME) -> dict[str, torch.Tensor]:
    """The shipped CLIP weights as an open_clip state dict (keys without the ``backbone.clip.`` prefix)."""
    return {k[len(BACKBONE_PREFIX):]: v for k, v in builtin_tensors(name).items() if k.startswith(BACKBONE_PREFIX)}


def builtin_backbone_weights(cache_dir: str | os.PathLike | None = None, name: str = BUILTIN_NAME) -> Path:
    """A ``.safetensors`` file of the shipped CLIP weights that ``create_backbone`` loads directly.

    Written once (atomically) under ``cache_dir`` (default ``$PERCEPTIQ_CACHE`` or ~/.cache/perceptiq),
    named by the shipped file's sha256 so a rebuilt model never reuses a stale extraction::

        backbone = create_backbone("perceptiq-tiny", weights=str(builtin_backbone_weights()))
    """
    from safetensors.torch import save_file

    digest = builtin_config(name).get("sha256") or sha256_of(builtin_checkpoint_path(name))
    folder = Path(cache_dir or os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "perceptiq")
    target = folder / f"{name}-backbone-{digest[:12]}.safetensors"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        save_file({k: v.contiguous() for k, v in builtin_backbone_state_dict(name).items()}, str(tmp))
        os.replace(tmp, target)
    return target


def build_builtin(backbone: ClipBackbone, *, task: str = "quality", scene: str | None = None,
                  shipped: str = BUILTIN_NAME, load_shipped: bool = True, **options) -> GRMPModel:
    """Registry factory ``perceptiq_tiny``: a ``GRMPModel`` on a shipped model's architecture.

    shipped: which shipped model (``SHIPPED_MODELS``); its checkpoint JSON names the architecture.
    load_shipped: load the package's tensors (by-name use). Checkpoints written by the builder set it
    to False because they carry every tensor themselves. With it, the backbone must come with
    ``weights="random"`` (the default): every CLIP weight is replaced by the shipped ones, so other
    backbone weights would be silently discarded — that is refused instead.
    """
    _check_shipped(shipped)
    if load_shipped:
        arch = builtin_config(shipped).get("backbone", BUILTIN_ARCH)
        if backbone.info.arch != arch:
            raise BuiltinWeightsError(f"{shipped} is trained for the {arch} architecture, not "
                                      f"{backbone.info.arch}; to put its prompts on another CLIP use model grmp-iqa")
        if backbone.info.weights != "random":
            raise BuiltinWeightsError(
                f"{shipped} ships its own CLIP weights; got weights={backbone.info.weights!r} "
                "(from --weights or $PERCEPTIQ_WEIGHTS). Leave weights unset for the built-in model, or "
                f"train from other weights with model grmp-iqa and --backbone {arch}.")
        # shipped weights that record no stem were built with the stems.json they ship beside
        check_shipped_stem(builtin_config(shipped).get("stem") or resolve_stem(arch), backbone.info.stem,
                           str(builtin_checkpoint_path(shipped)))
        recorded = {k: v for k, v in builtin_config(shipped).get("options", {}).items()
                    if k not in ("load_shipped", "shipped")}
        options = {**recorded, **options}
    model = GRMPModel(backbone, task=task, scene=scene, **options)
    if load_shipped:
        path = builtin_checkpoint_path(shipped)
        _, unexpected = model.load_state_dict(builtin_tensors(shipped), strict=False)
        if unexpected:
            raise BuiltinWeightsError(f"{path}: tensors the model does not have: "
                                      f"{unexpected[:5]} (options differ from the ones it was trained with)")
        # reports (`perceptiq score` header, /v1/models) name the weights actually used, not the placeholder
        backbone.info.weights = f"shipped ({path.name})"
        backbone.info.source_file = str(path)
    return model


# metadata: catalog.yaml, entry "perceptiq-tiny"
register_factory(BUILTIN_FACTORY, build_builtin)
