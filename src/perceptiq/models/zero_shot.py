"""Zero-shot CLIP assessment: no training, only fixed prompts and a frozen CLIP.

Two methods:

* ``levels`` — five ordered level prompts ({bad, poor, fair, good, perfect}, styled by task and scene);
  score = expectation of the level values (0, 0.25, 0.5, 0.75, 1) under the softmax of scaled cosine
  similarities (the Gamma Eq. 1 head with fixed C and CLIP's temperature);
* ``antonym`` — CLIP-IQA: probability of the positive prompt of an antonym pair ("Good photo." vs
  "Bad photo."), averaged over pairs.

``scene="auto"`` classifies each image's scene zero-shot and uses that scene's level prompts.
Text features of all prompts are computed once, at construction, and kept as buffers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbones.autocast_policy import at_least_float32
from ..backbones import ClipBackbone
from ..heads import antonym_probability, level_expectation
from ..prompts import antonym_pairs, check_scene, check_task, scene_classifier_prompts, scene_level_prompts

ZERO_SHOT_LEVEL_VALUES = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class ScoreOutput:
    scores: torch.Tensor            # [B]
    scenes: list[str] | None = None  # per image, when the model chose prompts by scene


class ZeroShotAssessor(nn.Module):
    """Frozen CLIP + fixed prompts -> a score in [0, 1] per image (higher is better)."""

    def __init__(self, backbone: ClipBackbone, *, method: str = "levels", task: str = "quality",
                 scene: str | None = None):
        super().__init__()
        if method not in ("levels", "antonym"):
            raise ValueError(f"unknown zero-shot method '{method}': choose levels or antonym")
        self.backbone = backbone
        self.method = method
        self.task = check_task(task)
        self.scene = scene if scene in (None, "auto") else check_scene(scene)
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.register_buffer("level_values", torch.tensor(ZERO_SHOT_LEVEL_VALUES))
        self._build_text_features()

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> torch.Tensor:
        device = next(self.backbone.parameters()).device
        tokens = self.backbone.tokenize(texts).to(device)
        return at_least_float32(self.backbone.encode_text(tokens))

    @torch.no_grad()
    def _build_text_features(self) -> None:
        """Every prompt this model can use, encoded once (never per image)."""
        self.scene_order: list[str] = []
        if self.method == "antonym":
            attribute = "aesthetics" if self.task == "aesthetics" else "quality"
            pairs = antonym_pairs(attribute)
            self.prompts = {"positive": [p for p, _ in pairs], "negative": [n for _, n in pairs]}
            self.register_buffer("positive_features", self._encode(self.prompts["positive"]))
            self.register_buffer("negative_features", self._encode(self.prompts["negative"]))
            return
        if self.scene == "auto":
            classifier = scene_classifier_prompts()
            self.scene_order = list(classifier)
            self.prompts = {s: scene_level_prompts(self.task, s) for s in self.scene_order}
            self.prompts["scene-classifier"] = [classifier[s] for s in self.scene_order]
            level = torch.stack([self._encode(self.prompts[s]) for s in self.scene_order])  # [S,K,D]
            self.register_buffer("level_features", level)
            self.register_buffer("scene_features", self._encode(self.prompts["scene-classifier"]))
        else:
            self.prompts = {"levels": scene_level_prompts(self.task, self.scene)}
            self.register_buffer("level_features", self._encode(self.prompts["levels"]))  # [K,D]

    def classify_scene(self, image_features: torch.Tensor) -> torch.Tensor:
        """Index into ``scene_order`` of each image's most likely scene; [B,D] -> [B]."""
        logits = at_least_float32(image_features) @ self.scene_features.t()
        return logits.argmax(dim=-1)

    def forward(self, pixels: torch.Tensor) -> ScoreOutput:
        """pixels [B,3,S,S] (CLIP-normalised) -> ScoreOutput(scores [B], scenes)."""
        image_features = at_least_float32(self.backbone.encode_image(pixels))
        inv_t = at_least_float32(self.backbone.logit_scale)
        if self.method == "antonym":
            scores = antonym_probability(image_features, self.positive_features, self.negative_features, inv_t)
            return ScoreOutput(scores)
        if self.scene == "auto":
            scene_index = self.classify_scene(image_features)
            per_image = self.level_features[scene_index]  # [B,K,D]
            scores = level_expectation(image_features, per_image, self.level_values, inv_t)
            return ScoreOutput(scores, [self.scene_order[i] for i in scene_index.tolist()])
        scores = level_expectation(image_features, self.level_features, self.level_values, inv_t)
        return ScoreOutput(scores, [self.scene] * len(scores) if self.scene else None)
