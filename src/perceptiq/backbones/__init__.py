"""CLIP backbones: open_clip architectures by name, weights from tags, local files, UniQA or random."""
from .architectures import DEFAULT_ARCH, TINY_ARCH, architecture_config, list_architectures
from .clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, BackboneInfo, ClipBackbone, create_backbone
from .weights import (
    WEIGHTS_ENV_VAR,
    WeightsChecksumError,
    WeightsNotFoundError,
    WeightSource,
    known_weight_files,
    parse_weight_source,
    read_state_dict,
    sha256_of,
)

__all__ = [
    "DEFAULT_ARCH", "TINY_ARCH", "architecture_config", "list_architectures",
    "OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "BackboneInfo", "ClipBackbone", "create_backbone",
    "WEIGHTS_ENV_VAR", "WeightsChecksumError", "WeightsNotFoundError", "WeightSource",
    "known_weight_files", "parse_weight_source", "read_state_dict", "sha256_of",
]
