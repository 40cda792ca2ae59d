"""GRMP-IQA: CLIP with a text meta-prompt (CoOp context) and a visual meta-prompt (deep prompts).

    p(high | x) = softmax_j( s · <g(q_j), f(x)> )_high,  j in {high, low}        (Eq. 2)
    L = -( y log p(high|x) + (1 - y) log(1 - p(high|x)) ),  y = MOS rescaled to [0, 1]   (Eq. 3)

with f the image encoder (deep visual prompts inserted, Eq. 1), g the text encoder applied to
"[v_1..v_M] high quality." / "[v_1..v_M] low quality." (section 3.2), <,> cosine similarity and s CLIP's
learned logit scale (1/tau). The score is p(high | x) in (0, 1), higher is better.

What is trained is chosen with ``set_trainable``: ``"prompts"`` for meta-training (section 3.3),
``"prompts+last4"`` for fine-tuning (section 4.2: prompts and the last four blocks of both encoders),
``"encoders"`` for Table 4 row 2 (meta-learning CLIP's encoders, no prompts).

For QGR (section 3.4) the model also gives the nine-class semantic distributions of Eq. 7: p_qua from
the model being tuned (``semantic_probabilities``) and p_sem from the original CLIP
(``frozen_semantic_probabilities``), the latter from a frozen copy of the vision tower taken before any
backbone weight can change (see ``snapshot_original``).
"""
from __future__ import annotations

import copy
import re

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.autocast_policy import at_least_float32
from ..backbones import ClipBackbone
from ..heads import antonym_probability
from ..prompts import check_task, quality_class_words, semantic_prompts
from ..prompts.learnable import LearnableTextContext
from ..prompts.visual import DeepVisualPrompts
from .registry import register_factory
from .text_cache import CachesTextFeatures, TextFeatureCache
from .zero_shot import ScoreOutput

DEFAULT_VISUAL_TOKENS = 1   # section 3.2: "a learnable token P^l is appended ... in each ViT layer" (docs/grmp.md)
_LAST_BLOCKS_MODE = re.compile(r"^prompts\+last(\d+)$")
TRAINABLE_MODES = ("none", "prompts", "prompts+last4", "encoders")  # "prompts+lastN" for any N


def _is_vmapped(tensor: torch.Tensor) -> bool:
    """True for a tensor wrapped by ``torch.func`` (e.g. batched by vmap): data-dependent checks cannot run."""
    try:
        return bool(torch._C._functorch.is_functorch_wrapped_tensor(tensor))
    except AttributeError:   # a torch without functorch internals: assume not batched
        return False


def grmp_quality_loss(p_high: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 3, averaged over the batch: BCE between p(high|x) [B] and the MOS rescaled to [0, 1] [B]."""
    if p_high.shape != y.shape:
        raise ValueError(f"grmp_quality_loss: p_high has shape {tuple(p_high.shape)}, "
                         f"targets {tuple(y.shape)}; they must match")
    y = y.to(p_high.dtype)
    if not _is_vmapped(y) and bool(((y < 0) | (y > 1) | torch.isnan(y)).any()):
        raise ValueError(f"grmp_quality_loss: targets must be MOS rescaled to [0, 1], got values in "
                         f"[{y.min().item():.4g}, {y.max().item():.4g}]")
    p_high = at_least_float32(p_high)
    return F.binary_cross_entropy(p_high, y.to(p_high.dtype))


class GRMPModel(CachesTextFeatures, nn.Module):
    """CLIP + text meta-prompt + visual meta-prompt -> p(high quality | x) [B].

    backbone: a ``ClipBackbone`` (ViT-B/16 in the paper).
    n_ctx, ctx_init: text context length M (4) and its start ("random" or a phrase of n_ctx tokens).
    n_visual_tokens: prompt tokens per vision block (default 1: "a learnable token P^l", section 3.2).
    use_text_prompt: False freezes the text context at the ``ctx_init`` phrase (hand-written prompt).
    use_visual_prompt: False inserts no visual prompts (plain CLIP image features).
    keep_original: snapshot the original vision tower at construction (else on the first
        ``set_trainable`` that unfreezes backbone weights).
    """

    def __init__(self, backbone: ClipBackbone, *, n_ctx: int = 4, ctx_init: str = "random",
                 n_visual_tokens: int = DEFAULT_VISUAL_TOKENS, use_text_prompt: bool = True,
                 use_visual_prompt: bool = True, task: str = "quality", scene: str | None = None,
                 seed: int = 0, keep_original: bool = False):
        super().__init__()
        if check_task(task) != "quality":
            raise ValueError(f"GRMP-IQA assesses quality (the prompts are 'high/low quality'), not {task}")
        if scene is not None:
            raise ValueError(f"GRMP-IQA has no scene prompts; got scene={scene!r}")
        self.task = task
        self.scene = scene
        self._text_cache = TextFeatureCache()
        self.backbone = backbone
        for parameter in backbone.parameters():
            parameter.requires_grad_(False)
        class_words = quality_class_words()
        if len(class_words) != 2:
            raise ValueError(f"GRMP-IQA needs two class words (high, low), prompt data gives {class_words}")
        self.text_context = LearnableTextContext(backbone, class_words, n_ctx=n_ctx, init=ctx_init,
                                                 seed=seed, learnable=use_text_prompt)
        self.visual_prompts = (DeepVisualPrompts(backbone, n_visual_tokens, seed=seed + 1)
                               if use_visual_prompt and n_visual_tokens > 0 else None)
        device = next(backbone.parameters()).device
        self.semantic_prompts = semantic_prompts()
        self.register_buffer("semantic_tokens", backbone.tokenize(self.semantic_prompts).to(device),
                             persistent=False)
        self.original_visual: nn.Module | None = None
        self._backbone_unfrozen = False
        self._backbone_loaded = False
        self.register_load_state_dict_pre_hook(self._note_backbone_load)
        self.set_trainable("prompts" if (use_text_prompt or self.visual_prompts is not None) else "none")
        if keep_original:
            self.snapshot_original()

    # -- features and scores ---------------------------------------------------------------------
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B,3,S,S] -> [B,D] normalised, with the visual prompts inserted (Eq. 1)."""
        if self.visual_prompts is None:
            return self.backbone.encode_image(pixels)
        return self.visual_prompts.encode_image(pixels)

    @property
    def _text_sources(self) -> list[torch.Tensor]:
        """Every tensor the text features depend on: the text tower (all CLIP weights outside the visual
        tower, token table included) and the context (a parameter, or a buffer when frozen)."""
        return ([p for name, p in self.backbone.named_parameters() if not name.startswith("clip.visual.")]
                + [self.text_context.ctx])

    def text_features(self) -> torch.Tensor:
        """[2, D] normalised features of the high- and low-quality prompts (in that order).

        Computed afresh (with a graph) while the text side trains; otherwise once per state of its
        weights (``TextFeatureCache``): the prompts are the same for every image, so scoring pays the
        text encoder once, not once per batch.
        """
        sources = self._text_sources
        if TextFeatureCache.needs_graph(sources):
            return self.text_context()
        return self._text_cache.get("quality", sources, self.text_context)

    def train(self, mode: bool = True):
        super().train(mode)                    # also drops the text cache (CachesTextFeatures)
        if self.original_visual is not None:   # the frozen original CLIP is only ever run for inference
            self.original_visual.eval()
        return self

    def quality_probability(self, pixels: torch.Tensor | None = None, *,
                            image_features: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 2: p(high | x) [B] from pixels or from precomputed ``image_features`` [B, D]."""
        if image_features is None:
            if pixels is None:
                raise ValueError("quality_probability needs pixels or image_features")
            image_features = self.image_features(pixels)
        text = self.text_features()
        return antonym_probability(image_features, text[0:1], text[1:2], self.backbone.logit_scale)

    def prompt_texts(self) -> dict[str, list[str]]:
        """The two class prompts, high then low quality; ``X`` marks each learned context vector."""
        return {"classes": list(self.text_context.prompts)}

    def forward(self, pixels: torch.Tensor) -> ScoreOutput:
        """pixels [B,3,S,S] (CLIP-normalised) -> ScoreOutput(scores = p(high|x) [B])."""
        return ScoreOutput(self.quality_probability(pixels))

    # -- semantic distributions for QGR (Eq. 7) --------------------------------------------------
    def semantic_log_probabilities(self, pixels: torch.Tensor | None = None, *,
                                   image_features: torch.Tensor | None = None) -> torch.Tensor:
        """log p_qua(w_i | x) [B, 9] of the model being tuned (current text blocks, visual prompts in)."""
        if image_features is None:
            if pixels is None:
                raise ValueError("semantic_log_probabilities needs pixels or image_features")
            image_features = self.image_features(pixels)
        text = self.backbone.encode_text(self.semantic_tokens)          # current parameters, every call
        logits = self.backbone.logit_scale * F.normalize(image_features, dim=-1) @ text.t()
        return torch.log_softmax(at_least_float32(logits), dim=-1)

    def semantic_probabilities(self, pixels: torch.Tensor | None = None, *,
                               image_features: torch.Tensor | None = None) -> torch.Tensor:
        """p_qua(w_i | x) [B, 9] over ``semantic_prompts`` (Eq. 7), differentiable."""
        return self.semantic_log_probabilities(pixels, image_features=image_features).exp()

    def _backbone_is_original(self) -> bool:
        return not (self._backbone_unfrozen or self._backbone_loaded
                    or any(p.requires_grad for p in self.backbone.parameters()))

    @torch.no_grad()
    def frozen_semantic_probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """p_sem(w_i | x) [B, 9] of the original CLIP (no prompts, original weights), no gradient."""
        if self.original_visual is not None:
            features = F.normalize(self.original_visual(pixels), dim=-1)
            text, scale = self.original_semantic_features, self.original_logit_scale
        elif self._backbone_is_original():
            features = self.backbone.encode_image(pixels)               # plain CLIP: prompts not inserted
            text, scale = self.backbone.encode_text(self.semantic_tokens), self.backbone.logit_scale
        else:
            raise RuntimeError("the original CLIP is no longer available: backbone weights were made "
                               "trainable or loaded without a snapshot; call snapshot_original() (or build "
                               "with keep_original=True) before changing backbone weights")
        return torch.softmax(at_least_float32(scale * features @ text.t()), dim=-1)

    @torch.no_grad()
    def snapshot_original(self) -> None:
        """Keep a frozen copy of the original vision tower and the original semantic text features.

        Costs one vision tower of memory (ViT-B/16: about 86 M parameters, 0.34 GB in fp32); the text
        side needs only the nine semantic features [9, D] because the prompts are fixed.
        """
        if self.original_visual is not None:
            return
        if not self._backbone_is_original():
            raise RuntimeError("snapshot_original: backbone weights may already differ from the original "
                               "CLIP (trainable or loaded from a checkpoint); take the snapshot first")
        original = copy.deepcopy(self.backbone.clip.visual)
        for parameter in original.parameters():
            parameter.requires_grad_(False)
        self.original_visual = original.eval()
        self.register_buffer("original_semantic_features", self.backbone.encode_text(self.semantic_tokens),
                             persistent=False)
        self.register_buffer("original_logit_scale", self.backbone.logit_scale.detach().clone(),
                             persistent=False)

    def _note_backbone_load(self, module, state_dict, prefix, *args) -> None:
        if any(key.startswith(prefix + "backbone.") for key in state_dict):
            self._backbone_loaded = True

    # -- what is trained -------------------------------------------------------------------------
    def _prompt_parameters(self) -> list[nn.Parameter]:
        params = [p for p in self.text_context.parameters()]
        if self.visual_prompts is not None:
            params += list(self.visual_prompts.parameters())
        return params

    def _encoder_parameters(self) -> list[nn.Parameter]:
        """Every CLIP weight except the temperature (and SigLIP's bias, if any)."""
        clip = self.backbone.clip
        return [p for name, p in clip.named_parameters() if name not in ("logit_scale", "logit_bias")]

    def _last_block_parameters(self, n_blocks: int) -> list[nn.Parameter]:
        visual, text = self.backbone.visual_blocks, self.backbone.text_blocks
        if not 0 <= n_blocks <= min(len(visual), len(text)):
            raise ValueError(f"last {n_blocks} blocks: the encoders have {len(visual)} (vision) and "
                             f"{len(text)} (text) blocks")
        params = []
        for blocks in (visual, text):
            for block in list(blocks)[len(blocks) - n_blocks:]:
                params += list(block.parameters())      # ln_1, attn, ls_1, ln_2, mlp, ls_2
        return params

    def set_trainable(self, mode: str) -> list[str]:
        """Choose the trained parameters; returns their names (``named_parameters`` keys).

        "none"; "prompts" (text context + visual prompts: meta-training); "prompts+last4" (also every
        weight of the last 4 blocks of both encoders: fine-tuning, any N as "prompts+lastN");
        "encoders" (all CLIP weights but the temperature, prompts frozen: Table 4 row 2).
        """
        match = _LAST_BLOCKS_MODE.match(mode)
        if mode == "none":
            chosen = []
        elif mode == "prompts":
            chosen = self._prompt_parameters()
        elif match:
            chosen = self._prompt_parameters() + self._last_block_parameters(int(match.group(1)))
        elif mode == "encoders":
            chosen = self._encoder_parameters()
        else:
            raise ValueError(f"unknown trainable mode '{mode}': choose one of {', '.join(TRAINABLE_MODES)} "
                             "(or prompts+lastN)")
        chosen_ids = {id(p) for p in chosen}
        backbone_ids = {id(p) for p in self.backbone.parameters()}
        if chosen_ids & backbone_ids and self.original_visual is None and self._backbone_is_original():
            self.snapshot_original()     # before any backbone weight can change
        for parameter in self.parameters():
            parameter.requires_grad_(id(parameter) in chosen_ids)
        if chosen_ids & backbone_ids:
            self._backbone_unfrozen = True
        self.trainable_mode = mode
        return self.trainable_parameter_names()

    def trainable_parameter_names(self) -> list[str]:
        return [name for name, p in self.named_parameters() if p.requires_grad]

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The trained tensors only, by stable ``state_dict`` key (what a checkpoint stores)."""
        return {name: p.detach() for name, p in self.named_parameters() if p.requires_grad}


def build_grmp(backbone: ClipBackbone, *, task: str = "quality", scene: str | None = None,
               **options) -> GRMPModel:
    """Registry factory ``"grmp"``: options are ``GRMPModel``'s keyword arguments."""
    return GRMPModel(backbone, task=task, scene=scene, **options)


# metadata: catalog.yaml, entry "grmp-iqa"
register_factory("grmp", build_grmp)
