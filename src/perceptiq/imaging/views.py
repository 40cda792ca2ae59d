"""Views: how a decoded picture becomes model input. One concept for scoring, evaluation, the service,
Ray and training (docs/inference.md, "Views").

* ``resize`` — CLIP's evaluation transform: short side to the model's input size (bicubic), centre crop.
  One input per image; the fastest, and what the image looks like from across the room.
* ``crops:N`` — N crops of the model's input size taken at native resolution (or after an optional
  pre-resize of the short side, ``crops:N,resize=S``), on a deterministic grid (default) or at seeded
  random positions (``crops:N,random[,seed=K]``). The image's score is the mean of the crops' scores;
  the per-crop scores are kept (quality maps).
* ``full`` — the whole image at native resolution, up to a pixel budget (``full,max=PIXELS``; larger
  images are scaled down to it, never cut), trimmed to a multiple of the patch size; the ViT runs with
  interpolated position embeddings (``perceptiq.backbones.native_resolution``).

A view turns one RGB image into a :class:`ViewInput`: pixels ``[K, 3, h, w]`` (K crops, or 1) and where
each came from, as fractions of the image (so boxes hold whatever scale the decoder chose). Random
positions depend only on the view's seed and the image's size, never on a path or a call count, so one
image gets one score through every entry point (CLI, Python, HTTP, Ray).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from .decode import to_rgb

# OpenAI CLIP's normalisation (open_clip's OPENAI_DATASET_MEAN/STD); backbones override per model.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

VIEW_KINDS = ("resize", "crops", "full")
PLACEMENTS = ("grid", "random")
#: ``full``'s default pixel budget: 1024 x 1024 = 4096 ViT-B/16 tokens (attention memory grows with the
#: square of the token count, so an unbounded 12-megapixel photo would need ~100 GB in one forward).
DEFAULT_FULL_MAX_PIXELS = 1024 * 1024
VIEW_GRAMMAR = ("resize | crops:N[,grid|random][,resize=S][,seed=K] | full[,max=PIXELS]  "
                "(e.g. crops:10, crops:16,random,seed=3, crops:5,resize=512, full, full,max=2000000)")

Box = tuple[float, float, float, float]   # (left, top, right, bottom) as fractions of width/height


class ViewError(ValueError):
    """A view string that does not parse, or a view that cannot apply (message names the grammar)."""


@dataclass(frozen=True)
class View:
    """A parsed view (see the module docstring). ``str(view)`` is its canonical spelling."""

    kind: str = "resize"
    n_crops: int = 1
    placement: str = "grid"
    pre_resize: int | None = None
    seed: int = 0
    max_pixels: int = DEFAULT_FULL_MAX_PIXELS

    def __post_init__(self):
        if self.kind not in VIEW_KINDS:
            raise ViewError(f"unknown view '{self.kind}': {VIEW_GRAMMAR}")
        if self.n_crops < 1:
            raise ViewError(f"crops:N needs N >= 1, got {self.n_crops}")
        if self.placement not in PLACEMENTS:
            raise ViewError(f"crop placement '{self.placement}': choose grid or random")
        if self.pre_resize is not None and self.pre_resize < 1:
            raise ViewError(f"resize=S needs S >= 1, got {self.pre_resize}")
        if self.max_pixels < 1:
            raise ViewError(f"max=PIXELS needs PIXELS >= 1, got {self.max_pixels}")

    def __str__(self) -> str:
        if self.kind == "resize":
            return "resize"
        if self.kind == "full":
            return "full" if self.max_pixels == DEFAULT_FULL_MAX_PIXELS else f"full,max={self.max_pixels}"
        parts = [f"crops:{self.n_crops}"]
        if self.placement == "random":
            parts.append("random")
        if self.pre_resize is not None:
            parts.append(f"resize={self.pre_resize}")
        if self.seed:
            parts.append(f"seed={self.seed}")
        return ",".join(parts)

    @property
    def native(self) -> bool:
        """True when the view looks at pixels at (or near) their stored resolution."""
        return self.kind != "resize" and self.pre_resize is None

    def decode_short_side(self, input_size: int) -> int | None:
        """The short side the decoder may reduce a JPEG to (``load_rgb``'s ``target_short_side``): the
        input size for ``resize``, the pre-resize for ``crops:N,resize=S``, None (full size) otherwise."""
        if self.kind == "resize":
            return input_size
        if self.kind == "crops" and self.pre_resize is not None:
            return self.pre_resize
        return None

    def with_crops(self, n: int) -> "View":
        return replace(self, n_crops=n)


def parse_view(spec: "str | View | None", default: "str | View" = "resize") -> View:
    """``"crops:10,random"`` -> :class:`View`. None gives ``default``; a View passes through."""
    if spec is None:
        spec = default
    if isinstance(spec, View):
        return spec
    text = str(spec).strip().lower()
    if not text:
        raise ViewError(f"empty view: {VIEW_GRAMMAR}")
    head, *options = [part.strip() for part in text.split(",")]
    kind, _, count = head.partition(":")
    if kind not in VIEW_KINDS:
        from ..suggestions import did_you_mean

        raise ViewError(f"unknown view '{kind}'.{did_you_mean(kind, VIEW_KINDS, n=1)} {VIEW_GRAMMAR}")
    values: dict = {"kind": kind}
    if kind == "crops":
        if not count.isdigit():
            raise ViewError(f"view '{spec}': crops needs a count, crops:N ({VIEW_GRAMMAR})")
        values["n_crops"] = int(count)
    elif count:
        raise ViewError(f"view '{spec}': only crops takes a count ({VIEW_GRAMMAR})")
    for option in options:
        key, _, value = option.partition("=")
        if kind == "crops" and not value and key in PLACEMENTS:
            values["placement"] = key
        elif kind == "crops" and key in ("resize", "seed") and value.isdigit():
            values["pre_resize" if key == "resize" else "seed"] = int(value)
        elif kind == "full" and key == "max" and value.isdigit():
            values["max_pixels"] = int(value)
        else:
            raise ViewError(f"view '{spec}': option '{option}' not understood ({VIEW_GRAMMAR})")
    return View(**values)


@dataclass
class ViewInput:
    """One image seen through a view: ``pixels`` [K, 3, h, w] float32 (CLIP-normalised) and ``boxes``
    (K boxes, fractions of the oriented image's width/height, the region each input shows)."""

    pixels: torch.Tensor
    boxes: list[Box]

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


def _normalise(stack: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [K, h, w, 3] -> float32 [K, 3, h, w] (a channels-last view), (x / 255 - mean) / std.

    In numpy, not torch: views run in the scorer's decode threads (``inference/loader.py``), and a torch
    operation there starts an OpenMP team per decode thread beside the model's own, which slowed the
    whole pipeline: ``perceptiq-tiny`` end to end at 2 torch threads 20.8 -> 12.4 ms per image with this
    change (Intel AMX-BF16, quiet machine; at 1 thread 17.9 -> 17.1). Each row of pixels is one run of
    w*3 interleaved values, so mean and std are tiled along it and every operation is a contiguous pass
    (0.42 ms for four 224 x 224 crops, against 0.94 for the torch version). The same float32 operations
    as ``(x / 255 - mean) / std`` in torch, so the same values, bit for bit, in the same layout.
    """
    count, height, width, channels = stack.shape
    rows = stack.astype(np.float32).reshape(count * height, width * channels)
    rows /= np.float32(255.0)
    rows -= np.tile(np.asarray(mean, dtype=np.float32), width)
    rows /= np.tile(np.asarray(std, dtype=np.float32), width)
    return torch.from_numpy(rows.reshape(count, height, width, channels)).permute(0, 3, 1, 2)


def _resize_short_side(image: Image.Image, short: int) -> Image.Image:
    """Bicubic resize so the short side is ``short``; the long side is ``int(short * long / short_side)``
    (torchvision's ``Resize(int)`` arithmetic, which CLIP's preprocessing uses)."""
    width, height = image.size
    if width <= height:
        size = (short, int(short * height / width))
    else:
        size = (int(short * width / height), short)
    return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)


def clip_preprocess(
    image: Image.Image,
    size: int = 224,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> torch.Tensor:
    """The ``resize`` view of one image: CLIP's evaluation transform (bicubic resize of the short side to
    ``size``, centre crop, scale to [0, 1], normalise per channel). Returns ``[3, size, size]`` float32.

    Same arithmetic as torchvision's ``Resize(size, BICUBIC)`` + ``CenterCrop(size)`` used by CLIP and
    open_clip: the long side becomes ``int(size * long / short)``, the crop offset is
    ``round((side - size) / 2)``.
    """
    return resize_view(image, size, mean, std).pixels[0]


def resize_view(image: Image.Image, size: int, mean: Sequence[float] = CLIP_MEAN,
                std: Sequence[float] = CLIP_STD) -> ViewInput:
    rgb = image if image.mode == "RGB" else to_rgb(image)
    resized = _resize_short_side(rgb, size)
    width, height = resized.size
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    crop = resized.crop((left, top, left + size, top + size))
    box = (left / width, top / height, (left + size) / width, (top + size) / height)
    return ViewInput(_normalise(np.array(crop, dtype=np.uint8)[None], mean, std), [box])


def grid_shape(n: int, width: int, height: int) -> tuple[int, int]:
    """(rows, cols) with rows * cols >= n whose cells are closest to the image's aspect ratio, fewest
    spare cells first."""
    best = None
    for rows in range(1, n + 1):
        cols = math.ceil(n / rows)
        spare = rows * cols - n
        mismatch = abs(math.log((cols / rows) / (width / height)))
        key = (spare > 0 and spare >= min(rows, cols), mismatch, spare)
        if best is None or key < best[0]:
            best = (key, rows, cols)
    return best[1], best[2]


def _spread(count: int, room: int) -> list[int]:
    """``count`` offsets from 0 to ``room`` evenly spaced (the centre when count is 1)."""
    if count == 1:
        return [int(round(room / 2.0))]
    return [int(round(i * room / (count - 1))) for i in range(count)]


def crop_positions(width: int, height: int, size: int, n: int, placement: str = "grid",
                   seed: int = 0) -> list[tuple[int, int]]:
    """Top-left corners (left, top) of ``n`` ``size`` x ``size`` crops inside a ``width`` x ``height`` image.

    grid: a rows x cols grid (``grid_shape``) spanning the image edge to edge, cells taken evenly in raster
    order when the grid has spare cells. random: uniform positions from a generator seeded with
    (seed, width, height), so the same image size always gets the same positions.
    """
    if width < size or height < size:
        raise ViewError(f"a {width}x{height} image is smaller than the {size}px crop")
    if placement == "random":
        rng = np.random.default_rng([seed, width, height])
        lefts = rng.integers(0, width - size + 1, n)
        tops = rng.integers(0, height - size + 1, n)
        return [(int(x), int(y)) for x, y in zip(lefts, tops)]
    rows, cols = grid_shape(n, width, height)
    cells = [(left, top) for top in _spread(rows, height - size) for left in _spread(cols, width - size)]
    if len(cells) > n:
        cells = [cells[int(round(i * (len(cells) - 1) / (n - 1)))] for i in range(n)] if n > 1 else \
            [(int(round((width - size) / 2.0)), int(round((height - size) / 2.0)))]
    return cells


def crops_view(image: Image.Image, view: View, size: int, mean: Sequence[float] = CLIP_MEAN,
               std: Sequence[float] = CLIP_STD) -> ViewInput:
    """``crops:N``: optional pre-resize of the short side, an upscale only where the image is smaller
    than one crop, then N ``size`` crops (``crop_positions``)."""
    rgb = image if image.mode == "RGB" else to_rgb(image)
    if view.pre_resize is not None:
        rgb = _resize_short_side(rgb, max(view.pre_resize, size))
    elif min(rgb.size) < size:
        rgb = _resize_short_side(rgb, size)
    width, height = rgb.size
    positions = crop_positions(width, height, size, view.n_crops, view.placement, view.seed)
    stack = np.stack([np.asarray(rgb.crop((x, y, x + size, y + size)), dtype=np.uint8) for x, y in positions])
    boxes = [(x / width, y / height, (x + size) / width, (y + size) / height) for x, y in positions]
    return ViewInput(_normalise(stack, mean, std), boxes)


def full_view(image: Image.Image, view: View, size: int, patch: int, mean: Sequence[float] = CLIP_MEAN,
              std: Sequence[float] = CLIP_STD) -> ViewInput:
    """``full``: the whole image, scaled down only above ``view.max_pixels`` (aspect kept) and up only
    where the short side is below ``size``, then trimmed (centred) to a multiple of ``patch`` on each
    side, since the patch embedding would drop the remainder anyway."""
    rgb = image if image.mode == "RGB" else to_rgb(image)
    width, height = rgb.size
    if width * height > view.max_pixels:
        scale = math.sqrt(view.max_pixels / (width * height))
        new = (max(1, int(width * scale)), max(1, int(height * scale)))
        rgb = rgb.resize(new, Image.Resampling.BICUBIC)
    if min(rgb.size) < size:
        rgb = _resize_short_side(rgb, size)
    width, height = rgb.size
    keep_w, keep_h = width - width % patch, height - height % patch
    left, top = (width - keep_w) // 2, (height - keep_h) // 2
    if (keep_w, keep_h) != (width, height):
        rgb = rgb.crop((left, top, left + keep_w, top + keep_h))
    box = (left / width, top / height, (left + keep_w) / width, (top + keep_h) / height)
    return ViewInput(_normalise(np.array(rgb, dtype=np.uint8)[None], mean, std), [box])


def pool_scores(values: Sequence[float]) -> float:
    """An image's score from its view's inputs: the arithmetic mean (``math.fsum``, so the order of the
    inputs never changes the last bit). The one pooling rule of every view, in scoring and training."""
    return math.fsum(float(v) for v in values) / len(values)


@dataclass(frozen=True)
class ViewTransform:
    """A picklable RGB image -> :class:`ViewInput` for one view and one backbone's input geometry
    (``size``: input side, ``patch``: ViT patch size, ``mean``/``std``: normalisation)."""

    view: View
    size: int = 224
    patch: int = 16
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    def __call__(self, image: Image.Image) -> ViewInput:
        if self.view.kind == "resize":
            return resize_view(image, self.size, self.mean, self.std)
        if self.view.kind == "crops":
            return crops_view(image, self.view, self.size, self.mean, self.std)
        return full_view(image, self.view, self.size, self.patch, self.mean, self.std)

    @property
    def decode_short_side(self) -> int | None:
        return self.view.decode_short_side(self.size)
