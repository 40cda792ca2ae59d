"""Gamma (Zhou et al., "Gamma: Toward Generic Image Assessment with Mixture of Assessment Experts").

    I  = V^MoAE(x)  (MoAE in the last K blocks of the visual tower, Eq. 5)
    T_k = T^MoAE(prompt_k)  (same for the text tower)
    q  = sum_k C_k softmax_k( cos(I', T_k) / tau ),   I' = Adapter(I)        (Eq. 1)

Only the adaptive experts, routers and sigma of every MoAE module, the adapter and C are trained; the
rest of CLIP is frozen (the shared expert too, unless ``freeze_shared=False``).

Prompt sets are named by *prompt keys* so that every sample of a mixed batch can carry its own:

    "naive"                     {bad, poor, fair, good, perfect} image          (Section 3.2; Gamma, Gamma-T)
    "quality"                   {bad-quality, ...} image                        (Table 15 "quality prompt")
    "general:<task>"            general {bad-quality, ...} image / -aesthetics  (Table 15 "general prompt")
    "sdp:<scene>:<task>"        Scene-based Differential Prompts                (Table 11)

<task> is quality or aesthetics; <scene> is a scene of ``perceptiq.prompts.scene_names()`` or ``auto``
(classified per image, zero-shot, from the original CLIP features). Table 11 has aesthetics prompts for
the natural scene only, so ``sdp:auto:aesthetics`` means ``sdp:natural:aesthetics``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.autocast_policy import at_least_float32
from ..backbones import ClipBackbone
from ..experts import TOWERS, experts_bypassed, find_moae, insert_moae, routing_recorded, set_forced_expert
from ..experts.router import DEFAULT_ROUTER_INIT_STD
from ..heads import level_expectation
from ..heads.adapter import DEFAULT_ADAPTER_HIDDEN, Adapter
from ..prompts import check_scene, check_task, level_prompts, scene_classifier_prompts, scene_level_prompts
from .registry import register_factory
from .text_cache import CachesTextFeatures, TextFeatureCache
from .zero_shot import ScoreOutput

GAMMA_LEVEL_VALUES = (0.2, 0.4, 0.6, 0.8, 1.0)  # Section 3.2: C is initialised to [0.2, ..., 1.0]
PROMPT_STYLES = ("naive", "quality", "general", "sdp")
AUTO_SCENE = "auto"
SCENE_CLASSIFIER_KEY = "scene-classifier"


# -- prompt keys ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptKey:
    """A parsed prompt key: style, and the task / scene where the style uses them."""

    style: str
    task: str | None = None
    scene: str | None = None

    def __str__(self) -> str:
        if self.style == "sdp":
            return f"sdp:{self.scene}:{self.task}"
        if self.style == "general":
            return f"general:{self.task}"
        return self.style

    @property
    def needs_scene(self) -> bool:
        return self.style == "sdp" and self.scene == AUTO_SCENE

    def with_scene(self, scene: str) -> "PromptKey":
        return PromptKey(self.style, self.task, scene)


_KEY_FORMS = "naive | quality | general:<task> | sdp:<scene|auto>:<task>"


def parse_prompt_key(key: str) -> PromptKey:
    """Parse and canonicalise a prompt key (see the module docstring); a bad key raises ValueError."""
    parts = str(key).split(":")
    style = parts[0]
    try:
        if style in ("naive", "quality") and len(parts) == 1:
            return PromptKey(style)
        if style == "general" and len(parts) == 2:
            return PromptKey(style, check_task(parts[1]))
        if style == "sdp" and len(parts) == 3:
            scene, task = parts[1], check_task(parts[2])
            if scene != AUTO_SCENE:
                check_scene(scene)
            if task == "aesthetics":
                if scene not in ("natural", AUTO_SCENE):
                    raise ValueError("Table 11 has aesthetics prompts for the natural scene only")
                scene = "natural"
            return PromptKey(style, task, scene)
    except ValueError as error:
        raise ValueError(f"bad prompt key '{key}': {error}") from None
    raise ValueError(f"bad prompt key '{key}': expected {_KEY_FORMS}")


def prompt_key_texts(key: PromptKey | str) -> list[str]:
    """The five level prompts (worst to best) of a prompt key whose scene is known."""
    key = parse_prompt_key(key) if isinstance(key, str) else key
    if key.needs_scene:
        raise ValueError(f"prompt key '{key}' has scene 'auto': classify the image's scene first")
    if key.style == "naive":
        return level_prompts("naive")
    if key.style == "quality":
        return level_prompts("quality")
    if key.style == "general":
        return level_prompts("general" if key.task == "quality" else "general-aesthetics")
    return scene_level_prompts(key.task, key.scene)


def default_prompt_key(prompt_style: str | None, task: str, scene: str | None) -> PromptKey:
    """The key a model uses for samples that carry none.

    prompt_style None means "sdp" when a scene is given (Gamma-dagger of Table 1), "naive" otherwise.
    A scene with a style other than sdp is an error: only the SDP prompts name a scene.
    """
    check_task(task)
    style = prompt_style or ("sdp" if scene is not None else "naive")
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown Gamma prompt style '{style}': choose one of {', '.join(PROMPT_STYLES)}")
    if style != "sdp":
        if scene is not None:
            raise ValueError(f"scene '{scene}' needs prompt_style 'sdp' (style '{style}' names no scene)")
        return parse_prompt_key("general:" + task if style == "general" else style)
    if scene is None:
        if task != "aesthetics":
            raise ValueError("prompt_style 'sdp' needs a scene (natural, ai-generated, face, underwater or auto)")
        scene = "natural"
    return parse_prompt_key(f"sdp:{scene}:{task}")


# -- the model -------------------------------------------------------------------------------------------
class GammaModel(CachesTextFeatures, nn.Module):
    """Gamma: CLIP with MoAE in the last ``n_layers`` blocks of both towers, an adapter and learnable C.

    backbone: a ClipBackbone, modified in place (the MoAE modules are inserted into its blocks).
    task / scene / prompt_style: the default prompt key (``default_prompt_key``).
    n_experts, n_layers, towers: MoAE shape (Tables 3, 5); n_layers=0 is "w/o MoAE".
    freeze_shared, use_sigma, sigma_init, train_sigma, router_init_std: see ``MixtureOfAssessmentExperts``
        (``train_sigma=False``: sigma frozen at sigma_init = 0, the MoAE disabled; a control).
    adapter_hidden, adapter_residual: see ``perceptiq.heads.adapter``.
    level_values: initial C. tau: None -> CLIP's own frozen temperature 1/logit_scale; a float fixes it.
    seed: seeds the random initialisation (routers, adapter input layer) so a build is reproducible.

    forward(pixels [B,3,S,S], *, prompt_keys=None) -> ScoreOutput(scores [B], scenes or None).
    """

    def __init__(self, backbone: ClipBackbone, *, task: str = "quality", scene: str | None = None,
                 prompt_style: str | None = None, n_experts: int = 3, n_layers: int = 6,
                 towers: tuple[str, ...] | list[str] = TOWERS, freeze_shared: bool = True,
                 use_sigma: bool = True, sigma_init: float = 0.0, train_sigma: bool = True,
                 router_init_std: float = DEFAULT_ROUTER_INIT_STD, adapter_hidden: int = DEFAULT_ADAPTER_HIDDEN,
                 adapter_residual: bool = True, level_values: tuple[float, ...] | list[float] = GAMMA_LEVEL_VALUES,
                 tau: float | None = None, seed: int = 0):
        super().__init__()
        self.task = check_task(task)
        self.default_key = default_prompt_key(prompt_style, task, scene)
        self.scene = scene
        if tau is not None and tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.tau = tau
        self.backbone = backbone
        for p in backbone.parameters():
            p.requires_grad_(False)
        device = next(backbone.parameters()).device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            insert_moae(backbone, n_layers=n_layers, n_experts=n_experts, towers=towers,
                        freeze_shared=freeze_shared, use_sigma=use_sigma, sigma_init=sigma_init,
                        train_sigma=train_sigma, router_init_std=router_init_std)
            self.adapter = Adapter(backbone.embed_dim, adapter_hidden, residual=adapter_residual).to(device)
        self.level_values = nn.Parameter(torch.tensor([float(v) for v in level_values], device=device))
        self._text_cache = TextFeatureCache()
        self.scene_order = list(scene_classifier_prompts())

    # -- structure -------------------------------------------------------------------------------------
    @property
    def visual_experts(self):
        return find_moae(self.backbone, "visual")

    @property
    def text_experts(self):
        return find_moae(self.backbone, "text")

    def set_forced_expert(self, index: int | None, *, renormalize: bool = False) -> None:
        """Table 6: keep only adaptive expert ``index`` in every MoAE module of both towers."""
        set_forced_expert(find_moae(self.backbone), index, renormalize=renormalize)

    def prompt_key_for(self, *, task: str, scene: str | None, style: str | None = None) -> str:
        """The prompt key of a sample from a dataset with this task and scene (per-sample prompts in
        mixed training): the prompt style (the model's own, or ``style``, e.g. Table 15's prompts swapped
        at test time) decides whether the scene matters (SDP) or not."""
        style = style or self.default_key.style
        return str(default_prompt_key(style, task, scene if style == "sdp" else None))

    def prompt_texts(self) -> dict[str, list[str]]:
        """The default prompt key's five level prompts (worst to best); per scene when the scene is
        classified per image (``auto``)."""
        key = self.default_key
        if key.scene == "auto":
            return {f"sdp:{scene}:{key.task}": prompt_key_texts(f"sdp:{scene}:{key.task}")
                    for scene in self.scene_order}
        return {str(key): prompt_key_texts(key)}

    def inv_temperature(self) -> torch.Tensor | float:
        return 1.0 / self.tau if self.tau is not None else at_least_float32(self.backbone.logit_scale)

    # -- text features ---------------------------------------------------------------------------------
    @property
    def _text_parameters(self) -> list[nn.Parameter]:
        """Every backbone parameter outside the visual tower (all of them shape the text features)."""
        return [p for name, p in self.backbone.named_parameters() if not name.startswith("clip.visual.")]

    def _text_needs_graph(self) -> bool:
        return TextFeatureCache.needs_graph(self._text_parameters)

    def _encode_prompt_sets(self, keys: list[str]) -> torch.Tensor:
        """Text features of several prompt sets in one text-encoder pass: [U] keys -> [U,K,D]."""
        texts = [text for key in keys for text in prompt_key_texts(key)]
        device = self.level_values.device
        tokens = self.backbone.tokenize(texts).to(device)
        features = at_least_float32(self.backbone.encode_text(tokens))
        return features.reshape(len(keys), -1, features.shape[-1])

    def level_text_features(self, keys: list[str]) -> torch.Tensor:
        """[U] canonical prompt keys -> [U,K,D] normalised text features.

        With gradients needed (training) they are encoded afresh on every call, once per distinct set.
        Otherwise they come from a cache that is dropped whenever a text-side parameter changes.
        """
        if self._text_needs_graph():
            return self._encode_prompt_sets(keys)
        return torch.stack([self._cached(key) for key in keys])

    def _cached(self, key: str) -> torch.Tensor:
        """One prompt set's (or the scene classifier's) features from the cache, dropped whenever a
        text-side parameter changes (``TextFeatureCache``)."""
        compute = (self._encode_scene_classifier if key == SCENE_CLASSIFIER_KEY
                   else lambda: self._encode_prompt_sets([key])[0])
        return self._text_cache.get(key, self._text_parameters, compute)

    def _encode_scene_classifier(self) -> torch.Tensor:
        """Scene classifier prompts through the original CLIP text tower (experts bypassed): [S,D]."""
        prompts = scene_classifier_prompts()
        tokens = self.backbone.tokenize([prompts[s] for s in self.scene_order]).to(self.level_values.device)
        with experts_bypassed(self.text_experts):
            return at_least_float32(self.backbone.encode_text(tokens))

    # -- scenes ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def classify_scenes(self, pixels: torch.Tensor) -> list[str]:
        """Zero-shot scene of each image from the original CLIP features (all experts bypassed)."""
        with experts_bypassed(self.visual_experts):
            image = at_least_float32(self.backbone.encode_image(pixels))
        logits = image @ self._cached(SCENE_CLASSIFIER_KEY).t()
        return [self.scene_order[i] for i in logits.argmax(dim=-1).tolist()]

    def resolve_prompt_keys(self, pixels: torch.Tensor, prompt_keys: list[str] | None) -> list[PromptKey]:
        """Per-sample canonical keys; keys with scene 'auto' get the image's classified scene."""
        batch = pixels.shape[0]
        if prompt_keys is None:
            keys = [self.default_key] * batch
        else:
            if len(prompt_keys) != batch:
                raise ValueError(f"{len(prompt_keys)} prompt keys for a batch of {batch} images")
            keys = [parse_prompt_key(k) for k in prompt_keys]
        auto = [i for i, key in enumerate(keys) if key.needs_scene]
        if auto:
            scenes = self.classify_scenes(pixels[auto])
            for i, scene in zip(auto, scenes):
                keys[i] = keys[i].with_scene(scene)
        return keys

    # -- forward ---------------------------------------------------------------------------------------
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """I' of Eq. 1: adapter applied to CLIP's L2-normalised image feature: [B,3,S,S] -> [B,D]."""
        return self.adapter(at_least_float32(self.backbone.encode_image(pixels)))

    def forward(self, pixels: torch.Tensor, *, prompt_keys: list[str] | None = None) -> ScoreOutput:
        keys = self.resolve_prompt_keys(pixels, prompt_keys)
        names = [str(k) for k in keys]
        distinct = list(dict.fromkeys(names))
        text = self.level_text_features(distinct)                                    # [U,K,D]
        index = torch.tensor([distinct.index(n) for n in names], device=text.device)
        image = self.image_features(pixels)
        level = text[0] if len(distinct) == 1 else text[index]                      # [K,D] or [B,K,D]
        scores = level_expectation(image, level, self.level_values, self.inv_temperature())
        scenes = [k.scene for k in keys] if all(k.style == "sdp" for k in keys) else None
        return ScoreOutput(scores, scenes)

    @torch.no_grad()
    def mean_router_activation(self, pixels: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Fig. 5b: router probabilities of visual MoAE layer ``layer`` averaged over tokens: [B, n]."""
        modules = self.visual_experts
        if not modules or modules[0].n_experts == 0:
            raise ValueError("this Gamma model has no visual adaptive experts to report on")
        module = modules[layer]
        with routing_recorded([module]):
            self.backbone.encode_image(pixels)
            activation = module.mean_router_activation()
        module.last_router_probs = None
        return activation

    # -- checkpoints and counts -------------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Names -> tensors of the trained parameters only (what a checkpoint stores)."""
        return {name: p.detach() for name, p in self.named_parameters() if p.requires_grad}

    def count_parameters(self) -> dict[str, int]:
        """trainable / total parameter counts, with the trainable ones split into MoAE and head."""
        head = sum(p.numel() for p in self.adapter.parameters()) + self.level_values.numel()
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"trainable": trainable, "total": sum(p.numel() for p in self.parameters()),
                "moae_trainable": sum(p.numel() for m in find_moae(self.backbone)
                                      for p in m.parameters() if p.requires_grad),
                "head_trainable": head}


def build_gamma(backbone: ClipBackbone, *, task: str, scene: str | None, **options) -> GammaModel:
    """Registry factory for "gamma": options are GammaModel's keyword arguments."""
    return GammaModel(backbone, task=task, scene=scene, **options)


# metadata (name, tasks, scenes, prompts, default options): catalog.yaml, entry "gamma"
register_factory("gamma", build_gamma)
