"""Architectures are open_clip's, by name; perceptiq adds only its own small configs as data files.

``test-tiny`` (``configs/test-tiny.json``) is a 4-layer, 64-wide CLIP with the real tokenizer and the real
224×224 input: it runs through exactly the code ViT-B-16 runs through, in milliseconds, for tests and demos.
``test-tiny-deep`` has ViT-B-16's 12 blocks per tower at width 32, for tests of layer-count ablations (Gamma
Table 5 puts MoAE in up to 12 blocks).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

from ..suggestions import did_you_mean

DEFAULT_ARCH = "ViT-B-16"
TINY_ARCH = "test-tiny"
# data files in configs/ that are not open_clip architectures
NOT_ARCHITECTURES = frozenset({"known_weights.json", "stems.json"})


@lru_cache(maxsize=1)
def register_perceptiq_configs() -> None:
    """Add perceptiq's JSON architecture configs to open_clip's registry (idempotent)."""
    import open_clip

    with resources.as_file(resources.files("perceptiq.backbones").joinpath("configs")) as folder:
        for path in sorted(folder.glob("*.json")):
            if path.name not in NOT_ARCHITECTURES:
                open_clip.add_model_config(path)


def list_architectures() -> list[str]:
    import open_clip

    register_perceptiq_configs()
    return list(open_clip.list_models())


def architecture_config(arch: str) -> dict:
    """The open_clip config dict of an architecture; unknown names get a did-you-mean hint."""
    import open_clip

    register_perceptiq_configs()
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        names = list_architectures()
        hint = did_you_mean(arch, names)
        raise ValueError(f"unknown CLIP architecture '{arch}'.{hint} `perceptiq models --archs` lists them all.")
    return cfg
