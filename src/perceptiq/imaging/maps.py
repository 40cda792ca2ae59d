"""Quality maps: an image with its per-crop scores drawn over it as a heat map, so a user sees *where* an
image is bad (issue 12).

Each pixel's value is the mean score of the crops that cover it (grid crops tile the image; random crops
overlap), coloured from red (the image's worst crop) through yellow to green (its best), blended over a
greyed copy of the picture; pixels no crop covers keep the plain picture. The colours are relative to
the image's own crops, so small differences show; the legend gives the actual scores. Each crop's score
is written at its centre.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Box = tuple[float, float, float, float]

#: red -> yellow -> green at positions 0, 0.5, 1 (bad -> good); reversed when lower is better
_STOPS = np.array([[215, 48, 39], [254, 224, 139], [26, 152, 80]], dtype=np.float64)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """values in [0, 1] (any shape) -> RGB float [..., 3] on the red-yellow-green ramp."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    low = _STOPS[0] + (_STOPS[1] - _STOPS[0]) * (v / 0.5)
    high = _STOPS[1] + (_STOPS[2] - _STOPS[1]) * ((v - 0.5) / 0.5)
    return np.where(v < 0.5, low, high)


def score_field(size: tuple[int, int], boxes: Sequence[Box], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(mean score per pixel [H, W], covered mask [H, W]) for an image of ``size`` (width, height)."""
    width, height = size
    total = np.zeros((height, width))
    count = np.zeros((height, width))
    for (left, top, right, bottom), score in zip(boxes, scores):
        x0, x1 = int(round(left * width)), max(int(round(right * width)), int(round(left * width)) + 1)
        y0, y1 = int(round(top * height)), max(int(round(bottom * height)), int(round(top * height)) + 1)
        total[y0:y1, x0:x1] += score
        count[y0:y1, x0:x1] += 1
    covered = count > 0
    return np.divide(total, count, out=np.zeros_like(total), where=covered), covered


def quality_map(image: Image.Image, boxes: Sequence[Box], scores: Sequence[float], *,
                higher_is_better: bool = True, max_side: int = 1024, alpha: float = 0.5,
                title: str | None = None) -> Image.Image:
    """The picture (scaled so its long side is at most ``max_side``) with the crops' scores as a heat map,
    the score written at each crop's centre, and a legend strip below (worst and best crop score)."""
    rgb = image.convert("RGB")
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    width, height = rgb.size
    scores = [float(s) for s in scores]
    field, covered = score_field(rgb.size, boxes, scores)
    low, high = min(scores), max(scores)
    spread = high - low
    relative = (field - low) / spread if spread > 0 else np.full_like(field, 0.5)
    if not higher_is_better:
        relative = 1.0 - relative
    picture = np.asarray(rgb, dtype=np.float64)
    grey = picture.mean(axis=-1, keepdims=True).repeat(3, axis=-1)
    blended = (1 - alpha) * grey + alpha * heat_colours(relative)
    out = np.where(covered[..., None], blended, picture)
    canvas = Image.new("RGB", (width, height + 28), (255, 255, 255))
    canvas.paste(Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for (left, top, right, bottom), score in zip(boxes, scores):
        cx, cy = (left + right) / 2 * width, (top + bottom) / 2 * height
        text = f"{score:.3f}"
        bbox = draw.textbbox((0, 0), text, font=font)
        w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
        draw.rectangle((cx - w / 2 - 2, cy - h / 2 - 2, cx + w / 2 + 2, cy + h / 2 + 3), fill=(0, 0, 0))
        draw.text((cx - w / 2, cy - h / 2 - bbox[1]), text, fill=(255, 255, 255), font=font)
    ramp = np.linspace(0, 1, max(width // 3, 2))
    strip = heat_colours(ramp if higher_is_better else ramp[::-1])
    strip_image = Image.fromarray(np.clip(np.rint(np.repeat(strip[None], 10, axis=0)), 0, 255).astype(np.uint8))
    canvas.paste(strip_image, (4, height + 9))
    worst, best = (low, high) if higher_is_better else (high, low)
    legend = f"worst crop {worst:.3f} ... best crop {best:.3f}  (mean {np.mean(scores):.3f}, {len(scores)} crops)"
    if title:
        legend = f"{title}: {legend}"
    draw.text((width // 3 + 10, height + 8), legend, fill=(0, 0, 0), font=font)
    return canvas


class QualityMapWriter:
    """Writes ``folder/<file stem>.png`` per scored image (``-2``, ``-3``, ... when two files share a stem
    in one run). The picture is decoded again, at reduced size where the format allows."""

    def __init__(self, folder, *, higher_is_better: bool = True, max_side: int = 1024):
        from pathlib import Path

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.higher_is_better = higher_is_better
        self.max_side = max_side
        self._used: set[str] = set()
        self.written = 0

    def target(self, source_path: str):
        from pathlib import Path

        stem = Path(source_path).stem or "image"
        name, k = stem, 1
        while name in self._used:
            k += 1
            name = f"{stem}-{k}"
        self._used.add(name)
        return self.folder / f"{name}.png"

    def write(self, source_path: str, boxes: Sequence[Box], scores: Sequence[float]):
        """The map of one image; returns where it went."""
        from .decode import load_rgb

        image = load_rgb(source_path, target_short_side=self.max_side // 2)
        out = self.target(source_path)
        quality_map(image, boxes, scores, higher_is_better=self.higher_is_better, max_side=self.max_side,
                    title=f"{np.mean(scores):.3f}").save(out)
        self.written += 1
        return out
