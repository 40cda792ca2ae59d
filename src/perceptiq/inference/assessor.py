"""``Assessor``: the object ``perceptiq.load_model`` returns — a built model plus its view (how a file
becomes model input), device, precision and ``.score(...)`` for paths, PIL images, numpy arrays or
tensors."""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..backbones.autocast_policy import bf16_residual_stream
from ..backbones.inference_weights import weight_copies_for
from ..backbones.native_resolution import patch_size as _patch_size
from ..backbones.precision import autocast_context, resolve_device, resolve_precision
from ..imaging.decode import ImageDecodeError, load_rgb
from ..imaging.views import View, ViewInput, ViewTransform, clip_preprocess, parse_view
from ..models import AssessmentBundle, ScoreOutput, build_model
from .results import ScoreResult, ScoreResults, mean_score

DEFAULT_MAX_PIXELS = 200_000_000
_WHOLE = (0.0, 0.0, 1.0, 1.0)


@dataclasses.dataclass
class ViewScore:
    """One image's outcome from its view's inputs: the mean score, each input's score, the scene."""

    score: float
    crop_scores: list[float]
    scene: str | None


class Assessor:
    """A ready-to-run assessment model.

    ``score(x)`` accepts a path, a list of paths (files or folders), a PIL image, a numpy image
    (H x W, H x W x 3/4; uint8, or float in [0, 1]; a 4-D array is a batch) or a list of them, or a
    preprocessed tensor [B,3,S,S] / [3,S,S]. It returns :class:`ScoreResults`: one
    :class:`ScoreResult` (path, score, per-crop scores and boxes, error) per input; ``np.asarray`` of it
    is the scores (NaN where an input could not be scored, with a warning naming it). ``view`` (a
    ``perceptiq.imaging`` view: ``resize``, ``crops:N``, ``full``) defaults to the model's.
    """

    def __init__(self, bundle: AssessmentBundle, *, device: torch.device, precision: str,
                 max_pixels: int = DEFAULT_MAX_PIXELS, view: str | View | None = None):
        self.bundle = bundle
        self.module = bundle.module
        self.device = device
        self.precision = precision
        self.max_pixels = max_pixels
        info = bundle.backbone
        self.image_size = info.image_size
        visual = getattr(getattr(getattr(self.module, "backbone", None), "clip", None), "visual", None)
        self.image_tower = visual
        self.patch_size = _patch_size(visual) if visual is not None and hasattr(visual, "conv1") else 16
        # the view: asked for, else the checkpoint's recipe's test view, else the model's default
        self.view = parse_view(view, default=bundle.config.get("view") or bundle.spec.default_view)
        # RGB PIL image -> ViewInput; a frozen dataclass of plain values, so DataLoader workers and Ray
        # tasks can pickle it
        self.transform = self.view_transform(self.view)

    def view_transform(self, view: str | View | None = None) -> ViewTransform:
        """The picklable image -> :class:`ViewInput` of ``view`` (default: this assessor's) for this
        model's input geometry."""
        info = self.bundle.backbone
        return ViewTransform(parse_view(view, default=self.view), size=info.image_size, patch=self.patch_size,
                             mean=tuple(info.mean), std=tuple(info.std))

    def view_input(self, source, view: str | View | None = None) -> ViewInput:
        """A path, bytes, PIL image or numpy image -> :class:`ViewInput` (raises ImageDecodeError)."""
        transform = self.view_transform(view)
        image = load_rgb(_as_image_source(source), target_short_side=transform.decode_short_side,
                         max_pixels=self.max_pixels)
        return transform(image)

    def preprocess(self, source) -> torch.Tensor:
        """A path, bytes, PIL or numpy image -> CLIP's single input [3,S,S] (the ``resize`` view), e.g. to
        build a tensor for ``predict``. Raises ImageDecodeError on a bad image."""
        info = self.bundle.backbone
        image = load_rgb(_as_image_source(source), target_short_side=self.image_size, max_pixels=self.max_pixels)
        return clip_preprocess(image, size=info.image_size, mean=info.mean, std=info.std)

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
        """Model, backbone, weights, task, scene, score range and direction, device, precision, view, and
        ``prompts``: always a dict of prompt-set name -> list of prompt texts (``summary``: the catalog's
        one-line description of the prompts)."""
        spec, info = self.bundle.spec, self.bundle.backbone
        return {
            "model": spec.name, "description": spec.description, "task": self.task, "scene": self.scene,
            "backbone": info.arch, "weights": info.weights, "score_range": list(spec.score_range),
            "higher_is_better": spec.higher_is_better, "device": str(self.device),
            "precision": self.precision, "view": str(self.view), "prompts": self._prompt_texts(),
            "knows": spec.knows, "does_not_know": spec.does_not_know,
        }

    def _prompt_texts(self) -> dict[str, list[str]]:
        texts: dict[str, list[str]] = {"summary": [self.bundle.spec.prompts]}
        given = getattr(self.module, "prompt_texts", None)
        given = given() if callable(given) else getattr(self.module, "prompts", None)
        if isinstance(given, dict):
            texts.update({str(k): [str(t) for t in v] for k, v in given.items()})
        return texts

    # running ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, pixels: torch.Tensor) -> ScoreOutput:
        """pixels [B,3,H,W] (model input) -> ScoreOutput with scores as float32 on the CPU."""
        pixels = pixels.to(self.device, non_blocking=True)
        with autocast_context(self.precision, self.device), self._bf16_inference():
            out = self.module(pixels)
        return ScoreOutput(out.scores.float().cpu(), out.scenes)

    def _bf16_inference(self):
        """Under bf16, for a model in eval mode: the image tower's linear and attention layers use bf16
        copies of their weights made once, instead of autocast casting the fp32 weights on every call
        (same numerics; ``backbones/inference_weights.py``), and its residual stream runs in bf16 from
        fp32 patch embeddings (``backbones/autocast_policy.py``, adjustment 3: the copies and casts of an
        fp32 stream cost 8 % of ViT-B/16's forward). Otherwise nothing."""
        if self.precision != "bf16" or self.image_tower is None or self.module.training:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(weight_copies_for(self.image_tower, torch.bfloat16).active())
        stack.enter_context(bf16_residual_stream())
        return stack

    def predict_inputs(self, inputs: Sequence[ViewInput], *, max_batch: int = 32,
                       stacked: torch.Tensor | None = None) -> list[ViewScore]:
        """Score the K inputs of each :class:`ViewInput`; one :class:`ViewScore` per item (the mean over
        its inputs, each input's score, the most frequent scene).

        Inputs of one shape share forward passes of at most ``max_batch`` inputs (fewer for inputs larger
        than the model's native size: the same number of tokens per pass). ``stacked``: every item's
        inputs already concatenated ``[sum K,3,h,w]`` (a loader's batch), to skip one copy.
        """
        counts = [len(vi) for vi in inputs]
        total = sum(counts)
        scores: list[float] = [0.0] * total
        scenes: list[str | None] = [None] * total
        if stacked is not None and stacked.shape[0] == total:
            groups = {tuple(stacked.shape[1:]): (list(range(total)), stacked)}
        else:
            by_shape: dict[tuple, list[int]] = collections.defaultdict(list)
            flat = [vi.pixels[k] for vi in inputs for k in range(len(vi))]
            for i, tensor in enumerate(flat):
                by_shape[tuple(tensor.shape)].append(i)
            groups = {shape: (ids, None) for shape, ids in by_shape.items()}
        for shape, (ids, tensor) in groups.items():
            native_tokens = (self.image_size // self.patch_size) ** 2
            tokens = max(1, (shape[1] // self.patch_size) * (shape[2] // self.patch_size))
            per_pass = max(1, max_batch * native_tokens // max(tokens, native_tokens))
            for start in range(0, len(ids), per_pass):
                chunk = ids[start:start + per_pass]
                if tensor is not None:
                    pixels = tensor[chunk[0]:chunk[-1] + 1]
                else:
                    pixels = torch.stack([flat[i] for i in chunk])
                out = self.predict(pixels)
                for i, score in zip(chunk, out.scores.tolist()):
                    scores[i] = float(score)
                if out.scenes is not None:
                    for i, scene in zip(chunk, out.scenes):
                        scenes[i] = scene
        results, offset = [], 0
        for count in counts:
            crop_scores = scores[offset:offset + count]
            crop_scenes = [s for s in scenes[offset:offset + count] if s is not None]
            scene = collections.Counter(crop_scenes).most_common(1)[0][0] if crop_scenes else None
            results.append(ViewScore(mean_score(crop_scores), crop_scores, scene))
            offset += count
        return results

    def score(self, inputs, *, view: str | View | None = None, batch_size: int = 32,
              num_workers: int = 0) -> ScoreResults:
        """Score paths / folders, PIL or numpy images, or a preprocessed tensor (see the class docstring)."""
        chosen = parse_view(view, default=self.view)
        if isinstance(inputs, torch.Tensor):
            return self._score_tensor(inputs, chosen, batch_size)
        if isinstance(inputs, np.ndarray) and inputs.ndim == 4:
            inputs = list(inputs)
        if isinstance(inputs, (str, os.PathLike, Image.Image, np.ndarray, bytes)):
            inputs = [inputs]
        items = list(inputs)
        if all(isinstance(i, (str, os.PathLike)) for i in items):
            from .scorer import score_paths  # paths: the streaming scorer

            rows = score_paths(self, items, view=chosen, batch_size=batch_size, num_workers=num_workers,
                               progress=False)
            results = [ScoreResult(r["path"], r["score"], r["error"], r.get("crop_scores") or [],
                                   r.get("boxes") or [], r.get("scene"), str(chosen)) for r in rows]
        else:
            results = self._score_in_memory(items, chosen, batch_size)
        failed = [r for r in results if r.error]
        if failed:
            where = failed[0].path or f"input {results.index(failed[0])}"
            warnings.warn(f"{len(failed)} input(s) could not be scored, e.g. {where}: {failed[0].error}",
                          stacklevel=2)
        return ScoreResults(results)

    def _score_tensor(self, pixels: torch.Tensor, view: View, batch_size: int) -> ScoreResults:
        pixels = pixels.unsqueeze(0) if pixels.dim() == 3 else pixels
        size, patch = self.image_size, self.patch_size
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(f"a tensor given to score() must be preprocessed model input [B,3,{size},{size}] "
                             f"(or [3,{size},{size}]), got shape {list(pixels.shape)}; pass PIL images, numpy "
                             "arrays or paths to have them preprocessed")
        h, w = pixels.shape[-2:]
        if view.kind != "full" and (h, w) != (size, size):
            raise ValueError(f"a tensor given to score() must be {size}x{size} model input for view '{view}', "
                             f"got {h}x{w} ({list(pixels.shape)}); pass PIL images, numpy arrays or paths to "
                             f"have them resized/cropped, or use view 'full' for other sizes")
        if h < patch or w < patch:
            raise ValueError(f"a tensor of {h}x{w} is smaller than one {patch}px patch")
        chunks = [self.predict(pixels[i:i + batch_size]) for i in range(0, len(pixels), batch_size)]
        results = []
        for out in chunks:
            scenes = out.scenes or [None] * len(out.scores)
            results += [ScoreResult(None, float(s), None, [float(s)], [_WHOLE], scene, str(view))
                        for s, scene in zip(out.scores.tolist(), scenes)]
        return ScoreResults(results)

    def _score_in_memory(self, items: list, view: View, batch_size: int) -> list[ScoreResult]:
        """Items may mix in-memory images and paths (folders expanded); scored in batches, in order."""
        from .scorer import list_inputs

        sources: list[tuple[str | None, object]] = []
        for item in items:
            if isinstance(item, (str, os.PathLike)):
                sources += [(path, path) for path in list_inputs([item])]
            else:
                sources.append((None, item))
        transform = self.view_transform(view)
        results: list[ScoreResult] = []
        for start in range(0, len(sources), batch_size):
            chunk = sources[start:start + batch_size]
            prepared: list[ViewInput | str] = []
            for _, source in chunk:
                try:
                    image = load_rgb(_as_image_source(source), target_short_side=transform.decode_short_side,
                                     max_pixels=self.max_pixels)
                    prepared.append(transform(image))
                except ImageDecodeError as err:
                    prepared.append(str(err))
            good = [p for p in prepared if isinstance(p, ViewInput)]
            scored = iter(self.predict_inputs(good, max_batch=batch_size))
            for (path, _), item in zip(chunk, prepared):
                if isinstance(item, str):
                    results.append(ScoreResult(path, None, item, view=str(view)))
                else:
                    outcome = next(scored)
                    results.append(ScoreResult(path, outcome.score, None, outcome.crop_scores, list(item.boxes),
                                               outcome.scene, str(view)))
        return results


def _as_image_source(source):
    """numpy images become PIL images; everything else goes to ``load_rgb`` as it is."""
    if isinstance(source, np.ndarray):
        return numpy_to_image(source)
    if isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)):
        return source
    raise TypeError(f"cannot score a {type(source).__name__}: give paths, PIL images, numpy images "
                    "(H x W [x 3|4]) or a preprocessed tensor")


def numpy_to_image(array: np.ndarray) -> Image.Image:
    """H x W (grey), H x W x 1/3/4 (channels last) or 3 x H x W -> PIL image. uint8 as is; other integer
    types must fit 0..255; floats are read as [0, 1] (clipped)."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)   # channels first (a torch-style array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"a numpy image must be H x W, H x W x 3 or H x W x 4, got shape {list(a.shape)}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        a = np.clip(np.rint(np.nan_to_num(a) * 255.0), 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        if a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError(f"a {a.dtype} numpy image must hold values in 0..255 (or be float in [0, 1])")
        a = a.astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a))   # uint8 H x W / x3 / x4: L, RGB, RGBA


def load_model(model: str = "zero-shot", *, backbone: str | None = None, weights: str | None = None,
               task: str | None = None, scene: str | None = None, device: str = "auto",
               precision: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS, view: str | View | None = None,
               **options) -> Assessor:
    """Build a registered model (by name) or load a checkpoint (by path), ready to ``.score(...)``.

    >>> m = load_model("zero-shot", backbone="test-tiny", weights="random")
    >>> m.score(["photo.jpg", "folder/"])

    ``view``: how a file becomes model input (``resize``, ``crops:N[,random]``, ``full``; default: the
    model's, ``perceptiq models`` shows it).
    """
    dev = resolve_device(device)
    bundle = build_model(model, backbone=backbone, weights=weights, task=task, scene=scene, device=dev,
                         **options)
    return Assessor(bundle, device=dev, precision=resolve_precision(precision, dev), max_pixels=max_pixels,
                    view=view)
