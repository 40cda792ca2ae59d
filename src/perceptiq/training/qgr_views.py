"""QGR (GRMP-IQA Eq. 7-8) for models other than ``GRMPModel``: small views that give a model the four
methods ``qgr_step`` calls.

``qgr_step(model, ...)`` needs ``image_features(pixels)``, ``quality_probability(image_features=)`` (the
quality score the quality loss is taken on), ``semantic_log_probabilities(image_features=)`` (nine-class
"a photo of a [class]." distribution of the model being tuned) and ``frozen_semantic_probabilities(pixels)``
(the same distribution from the original CLIP). ``qgr_view(model)`` returns the model itself when it has
them (GRMP-IQA), else a registered view around it.

Gamma (``GammaQGRView``): the quality score is Gamma's level expectation (Eq. 1) with the model's default
prompt key; the tuned semantic distribution uses Gamma's adapted image feature I' and the semantic
prompts through the text tower with its MoAE experts active; the original CLIP is the same backbone with
every MoAE module bypassed (each returns its frozen shared expert, i.e. the original FFN) and no adapter.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.autocast_policy import at_least_float32
from ..experts import experts_bypassed, find_moae
from ..heads import level_expectation
from ..models.gamma import GammaModel
from ..prompts import semantic_prompts

QGR_METHODS = ("image_features", "quality_probability", "semantic_log_probabilities",
               "frozen_semantic_probabilities")
_VIEWS: dict[type, Callable[[nn.Module], object]] = {}


def register_qgr_view(model_type: type, view: Callable[[nn.Module], object]) -> None:
    _VIEWS[model_type] = view


def qgr_view(model: nn.Module):
    """``model`` if it already offers QGR's methods, else its registered view; a clear error otherwise."""
    if all(callable(getattr(model, name, None)) for name in QGR_METHODS):
        return model
    for model_type, view in _VIEWS.items():
        if isinstance(model, model_type):
            return view(model)
    raise TypeError(f"QGR (train.step: qgr) needs a model with {', '.join(QGR_METHODS)}; "
                    f"{type(model).__name__} has none registered (perceptiq.training.qgr_views)")


class GammaQGRView:
    """A Gamma model seen by ``qgr_step``; holds no parameters of its own (the model's are trained)."""

    def __init__(self, model: GammaModel):
        if model.default_key.needs_scene:
            raise ValueError("QGR on Gamma needs a fixed prompt key; the model's default key "
                             f"'{model.default_key}' classifies the scene per image (build with a scene)")
        shared_trained = [name for name, p in model.named_parameters() if ".shared." in name and p.requires_grad]
        if shared_trained:
            raise ValueError("QGR on Gamma needs the original CLIP as the semantic reference, but the shared "
                             f"experts are trained (e.g. {shared_trained[0]}); build with freeze_shared=True")
        self.model = model
        self._original_text: torch.Tensor | None = None

    def _semantic_tokens(self) -> torch.Tensor:
        return self.model.backbone.tokenize(semantic_prompts()).to(self.model.level_values.device)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """I' = Adapter(V^MoAE(x)) [B, D] (Gamma Eq. 1)."""
        return self.model.image_features(pixels)

    def quality_probability(self, pixels: torch.Tensor | None = None, *,
                            image_features: torch.Tensor | None = None) -> torch.Tensor:
        """Gamma's score q [B] (Eq. 1) for the default prompt key; the quality loss is taken on it."""
        if image_features is None:
            image_features = self.image_features(pixels)
        levels = self.model.level_text_features([str(self.model.default_key)])[0]        # [K, D]
        return level_expectation(image_features, levels, self.model.level_values, self.model.inv_temperature())

    def semantic_log_probabilities(self, pixels: torch.Tensor | None = None, *,
                                   image_features: torch.Tensor | None = None) -> torch.Tensor:
        """log p_qua(w_i | x) [B, 9]: I' against the semantic prompts through the tuned text tower."""
        if image_features is None:
            image_features = self.image_features(pixels)
        backbone = self.model.backbone
        text = backbone.encode_text(self._semantic_tokens())
        image_features = F.normalize(at_least_float32(image_features), dim=-1)
        logits = backbone.logit_scale * image_features @ at_least_float32(text).t()
        return torch.log_softmax(logits, dim=-1)

    @torch.no_grad()
    def frozen_semantic_probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """p_sem(w_i | x) [B, 9] of the original CLIP: every MoAE module bypassed, no adapter."""
        backbone = self.model.backbone
        modules = find_moae(backbone)
        with experts_bypassed(modules):
            if self._original_text is None or self._original_text.device != pixels.device:
                self._original_text = at_least_float32(backbone.encode_text(self._semantic_tokens()))
            image = at_least_float32(backbone.encode_image(pixels))
        return torch.softmax(backbone.logit_scale * image @ self._original_text.t(), dim=-1)


register_qgr_view(GammaModel, GammaQGRView)
