"""``ClipBackbone``: an open_clip CLIP model with its tokenizer, preprocessing constants and weight origin.

Prompts and experts are composed onto ``visual_blocks`` / ``text_blocks`` (the open_clip residual blocks)
by other packages; this module never changes open_clip's transformer.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .autocast_policy import install_autocast_policy
from .native_resolution import enable_any_input_size
from .stems import install_conv_stem, resolve_stem
from .architectures import DEFAULT_ARCH, architecture_config, register_perceptiq_configs
from .weights import WeightSource, parse_weight_source, read_state_dict, resolve_tag, verify_known_file

log = logging.getLogger(__name__)

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class BackboneInfo:
    arch: str
    weights: str
    quick_gelu: bool
    image_size: int
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    source_file: str | None = None
    notes: list[str] = field(default_factory=list)
    #: the convolutional stem's settings (``stems.resolve_stem``) for a hybrid architecture, else None
    stem: dict | None = None



class ClipBackbone(nn.Module):
    """A CLIP model plus what is needed to feed it.

    ``encode_image(pixels [B,3,S,S]) -> [B,D]`` and ``encode_text(tokens [T,L]) -> [T,D]`` return
    L2-normalised features by default; ``logit_scale`` is CLIP's learned inverse temperature (exp'ed).
    """

    def __init__(self, model: nn.Module, tokenizer, info: BackboneInfo):
        super().__init__()
        self.clip = model
        install_autocast_policy(model)   # fast, fp32-faithful bf16 autocast (backbones/autocast_policy.py)
        enable_any_input_size(model)     # the full view: position embeddings at any grid (native_resolution.py)
        self.tokenizer = tokenizer
        self.info = info

    # -- structure exposed for composition -------------------------------------------------------
    @property
    def visual_blocks(self) -> nn.ModuleList:
        return self.clip.visual.transformer.resblocks

    @property
    def text_blocks(self) -> nn.ModuleList:
        return self.clip.transformer.resblocks

    @property
    def embed_dim(self) -> int:
        return int(self.clip.text_projection.shape[-1])

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp()

    # -- encoders --------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.clip.encode_image(pixels)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.clip.encode_text(tokens)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text_embeddings(self, embeddings: torch.Tensor, tokens: torch.Tensor,
                               normalize: bool = True) -> torch.Tensor:
        """Text features from token *embeddings* [T,L,W] (learnable prompt contexts go in here).

        ``tokens`` [T,L] are only used to find the end-of-text position (the pooled token).
        Mirrors open_clip's ``CLIP.encode_text`` after its embedding lookup.
        """
        clip = self.clip
        cast_dtype = clip.transformer.get_cast_dtype()
        x = embeddings.to(cast_dtype) + clip.positional_embedding.to(cast_dtype)
        x = clip.transformer(x, attn_mask=clip.attn_mask)
        x = clip.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        x = clip.text_projection(x) if isinstance(clip.text_projection, nn.Linear) else x @ clip.text_projection
        return F.normalize(x, dim=-1) if normalize else x

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.clip.token_embedding(tokens)


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip logs 'No pretrained weights loaded' on the root logger; perceptiq loads weights itself."""
    class _Drop(logging.Filter):
        def filter(self, record):
            return "No pretrained weights loaded" not in record.getMessage()

    drop = _Drop()
    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _default_quick_gelu(source: WeightSource, tag_cfg: dict | None) -> bool:
    if source.format in ("uniqa", "openai-torchscript"):
        return True  # OpenAI CLIP and UniQA (fine-tuned from it) use QuickGELU
    if tag_cfg is not None:
        return bool(tag_cfg.get("quick_gelu", False))
    if source.path is not None:
        known = verify_known_file(source.path) if source.path.is_file() else None
        if known is not None:
            return known.quick_gelu
    return False


def create_backbone(
    arch: str = DEFAULT_ARCH,
    weights: str | None = None,
    *,
    device: str | torch.device = "cpu",
    quick_gelu: bool | None = None,
    cache_dir: str | None = None,
    seed: int = 0,
    stem: dict | None = None,
) -> ClipBackbone:
    """Build a CLIP backbone: architecture by open_clip name, weights from ``weights``.

    weights: "random" | an open_clip tag ("openai", ...) | a local file | "uniqa:FILE" | None
    (None reads ``$PERCEPTIQ_WEIGHTS``, then defaults to "openai"). A local file or "random" never
    touches the network; a tag that is neither cached nor reachable fails in seconds with a message.
    stem: settings over configs/stems.json's for a hybrid architecture (``stems.resolve_stem``: a recipe's
    ``model.stem``, or the ``"stem"`` a checkpoint recorded); ``info.stem`` holds what was built.
    """
    import open_clip

    register_perceptiq_configs()
    architecture_config(arch)  # did-you-mean on a typo, before any weight work
    stem_config = resolve_stem(arch, stem)  # a bad stem setting fails here too
    source = parse_weight_source(weights)
    tag_cfg = None
    path = source.path
    if source.kind == "tag":
        path, tag_cfg = resolve_tag(arch, source.tag, cache_dir=cache_dir)
        source = WeightSource(kind="tag", spec=source.spec, path=path, tag=source.tag)
    state = None
    known = None
    if path is not None:
        known = verify_known_file(path) if path.is_file() else None
        if known is not None and known.arch != arch:
            raise ValueError(f"{path.name} holds {known.arch} weights, but the architecture is {arch}")
        state = read_state_dict(path, source.format)
    if quick_gelu is None:
        quick_gelu = _default_quick_gelu(source, dict(tag_cfg) if tag_cfg else None)
        if state is not None and path is not None and path.suffix == ".pt" and known is not None:
            quick_gelu = known.quick_gelu

    with torch.random.fork_rng(devices=[]), _quiet_open_clip():
        torch.manual_seed(seed)
        model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu, device="cpu")
        # hybrid architectures (configs/stems.json) get their convolutional stem before weights load
        install_conv_stem(model, arch,
                          mean=tuple(getattr(model.visual, "image_mean", None) or OPENAI_CLIP_MEAN),
                          std=tuple(getattr(model.visual, "image_std", None) or OPENAI_CLIP_STD),
                          settings=stem_config)
    if state is not None:
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shape mismatches: name the file and the architecture
            raise ValueError(f"{path}: checkpoint does not fit {arch}: {err}") from err
        missing = [k for k in missing if not k.endswith("logit_bias")]
        if missing or unexpected:
            raise ValueError(
                f"{path}: checkpoint does not fit {arch}: {len(missing)} missing keys "
                f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]})."
            )
    model.eval()
    tokenizer = _tokenizer(arch)
    image_size = model.visual.image_size
    image_size = int(image_size[0] if isinstance(image_size, (tuple, list)) else image_size)
    mean = tuple(getattr(model.visual, "image_mean", None) or OPENAI_CLIP_MEAN)
    std = tuple(getattr(model.visual, "image_std", None) or OPENAI_CLIP_STD)
    info = BackboneInfo(
        arch=arch, weights=source.spec, quick_gelu=bool(quick_gelu), image_size=image_size,
        mean=mean, std=std, source_file=str(path) if path else None, stem=stem_config,
    )
    backbone = ClipBackbone(model, tokenizer, info)
    return backbone.to(device)


@lru_cache(maxsize=8)
def _tokenizer(arch: str):
    """open_clip's tokenizer of ``arch``, made once per process: building one reads and parses the BPE
    vocabulary (~0.1 s), and every model build asks for it. Tokenizers hold no per-model state."""
    import open_clip

    return open_clip.get_tokenizer(arch)
