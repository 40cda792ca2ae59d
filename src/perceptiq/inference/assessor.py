"""``Assessor``: the object ``perceptiq.load_model`` returns — a built model plus preprocessing, device,
precision and ``.score(...)`` for paths, PIL images or tensors."""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from ..models import AssessmentBundle, ScoreOutput, build_model
from .images import clip_preprocess, load_rgb
from .precision import autocast_context, resolve_device, resolve_precision

DEFAULT_MAX_PIXELS = 200_000_000


class Assessor:
    """A ready-to-run assessment model.

    ``score(x)`` accepts a path, a list of paths (files or folders), a PIL image or list of them, or a
    preprocessed tensor [B,3,S,S] / [3,S,S]; it returns a float array (NaN where a file could not be
    read, with a warning naming it). For long runs with per-file error rows use
    ``perceptiq.inference.score_paths``.
    """

    def __init__(self, bundle: AssessmentBundle, *, device: torch.device, precision: str,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        self.bundle = bundle
        self.module = bundle.module
        self.device = device
        self.precision = precision
        self.max_pixels = max_pixels
        info = bundle.backbone
        self.image_size = info.image_size
        # RGB PIL image -> [3,S,S]; a partial of a module-level function, so DataLoader workers can pickle it
        self.transform = functools.partial(clip_preprocess, size=info.image_size, mean=info.mean, std=info.std)

    def preprocess(self, source) -> torch.Tensor:
        """A path, bytes or PIL image -> CLIP input [3,S,S] (raises ImageDecodeError on a bad image)."""
        image = load_rgb(source, target_short_side=self.image_size, max_pixels=self.max_pixels)
        return self.transform(image)

    # metadata -----------------------------------------------------------------------------------
    @property
    def spec(self):
        return self.bundle.spec

    @property
    def task(self) -> str:
        return self.bundle.task

    @property
    def scene(self) -> str | None:
        return self.bundle.scene

    def describe(self) -> dict:
        spec, info = self.bundle.spec, self.bundle.backbone
        return {
            "model": spec.name, "description": spec.description, "task": self.task, "scene": self.scene,
            "backbone": info.arch, "weights": info.weights, "score_range": list(spec.score_range),
            "higher_is_better": spec.higher_is_better, "device": str(self.device),
            "precision": self.precision, "prompts": getattr(self.module, "prompts", spec.prompts),
        }

    # running ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, pixels: torch.Tensor) -> ScoreOutput:
        """pixels [B,3,S,S] -> ScoreOutput with scores as float32 on the CPU."""
        pixels = pixels.to(self.device, non_blocking=True)
        with autocast_context(self.precision, self.device):
            out = self.module(pixels)
        return ScoreOutput(out.scores.float().cpu(), out.scenes)

    def score(self, inputs, *, batch_size: int = 32, num_workers: int = 0) -> np.ndarray:
        if isinstance(inputs, torch.Tensor):
            pixels = inputs.unsqueeze(0) if inputs.dim() == 3 else inputs
            chunks = [self.predict(pixels[i:i + batch_size]).scores for i in range(0, len(pixels), batch_size)]
            return torch.cat(chunks).numpy() if chunks else np.zeros(0, dtype=np.float32)
        if isinstance(inputs, (str, os.PathLike, Image.Image)):
            inputs = [inputs]
        items = list(inputs)
        if items and all(isinstance(i, Image.Image) for i in items):
            return self._score_images(items, batch_size)
        from .scorer import score_paths  # paths: the streaming scorer

        rows = list(score_paths(self, items, batch_size=batch_size, num_workers=num_workers, progress=False))
        failed = [r for r in rows if r["error"]]
        if failed:
            warnings.warn(f"{len(failed)} file(s) could not be scored, e.g. {failed[0]['path']}: "
                          f"{failed[0]['error']}", stacklevel=2)
        return np.array([np.nan if r["score"] is None else r["score"] for r in rows], dtype=np.float64)

    def _score_images(self, images: Sequence[Image.Image], batch_size: int) -> np.ndarray:
        scores = []
        for start in range(0, len(images), batch_size):
            batch = torch.stack([self.preprocess(img) for img in images[start:start + batch_size]])
            scores.append(self.predict(batch).scores)
        return torch.cat(scores).numpy()


def load_model(model: str = "zero-shot", *, backbone: str | None = None, weights: str | None = None,
               task: str | None = None, scene: str | None = None, device: str = "auto",
               precision: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS, **options) -> Assessor:
    """Build a registered model (by name) or load a checkpoint (by path), ready to ``.score(...)``.

    >>> m = load_model("zero-shot", backbone="test-tiny", weights="random")
    >>> m.score(["photo.jpg", "folder/"])
    """
    dev = resolve_device(device)
    bundle = build_model(model, backbone=backbone, weights=weights, task=task, scene=scene, device=dev,
                         **options)
    return Assessor(bundle, device=dev, precision=resolve_precision(precision, dev), max_pixels=max_pixels)
