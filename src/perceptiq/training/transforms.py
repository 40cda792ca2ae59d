"""Image transforms for training and evaluation (picklable, so DataLoader workers can run them).

Train (``ImageTransform``): decode at native resolution -> (only where a recipe says so, citing its
source: the short side resized to ``resize``, or per dataset by ``dataset_resize``) -> random ``crop`` x
``crop`` crop -> random horizontal flip -> CLIP normalisation (GRMP-IQA section 4.2 "randomly crop each
input image into 10 patches of 224x224"; Gamma appendix A.2 "random cropping and random horizontal
flipping"). Positions and flips come from torch's generator of the process (seeded per worker and per
epoch by the DataLoader), so every epoch sees new crops and the ``crops_per_image`` copies of one image
differ.

Evaluation (``ViewEvalTransform``): the recipe's test view (``perceptiq.imaging`` views: ``resize`` or
``crops:N``) -> ``[K, 3, S, S]``; the image's score is the mean over its K inputs, exactly as
``perceptiq score --view`` computes it (docs/training.md, "Views").
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torchvision.transforms.functional as TF
from PIL import Image

from ..imaging.decode import load_rgb
from ..imaging.views import View, ViewTransform, parse_view


def _short_side(resize: int | None, dataset_resize: tuple[tuple[str, int], ...], dataset: str | None) -> int | None:
    return dict(dataset_resize).get(dataset, resize) if dataset is not None else resize


@dataclass(frozen=True)
class ImageTransform:
    """source (path/bytes/PIL) -> [3, crop, crop] float tensor.

    resize: short side after decoding (None, the default, keeps the native size); dataset_resize: per
    dataset short sides that replace ``resize`` for that dataset's images ((name, side) pairs); crop:
    output side; train: random crop + flip when True, centre crop when False.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: int | None = None
    crop: int = 224
    train: bool = False
    hflip: bool = True
    max_pixels: int = 200_000_000
    dataset_resize: tuple[tuple[str, int], ...] = ()

    def __call__(self, source, generator: torch.Generator | None = None, dataset: str | None = None) -> torch.Tensor:
        short = _short_side(self.resize, self.dataset_resize, dataset)
        image = load_rgb(source, target_short_side=short, max_pixels=self.max_pixels)
        if short is not None and min(image.size) != short:
            image = TF.resize(image, short, interpolation=TF.InterpolationMode.BICUBIC)
        if min(image.size) < self.crop:  # native-size training on a small image: upscale to fit the crop
            image = TF.resize(image, self.crop, interpolation=TF.InterpolationMode.BICUBIC)
        if self.train:
            image = self._random_crop_flip(image, generator)
        else:
            image = TF.center_crop(image, [self.crop, self.crop])
        tensor = TF.to_tensor(image)
        return TF.normalize(tensor, self.mean, self.std)

    def _random_crop_flip(self, image: Image.Image, generator: torch.Generator | None) -> Image.Image:
        width, height = image.size
        top = int(torch.randint(0, height - self.crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - self.crop + 1, (1,), generator=generator))
        image = TF.crop(image, top, left, self.crop, self.crop)
        if self.hflip and bool(torch.rand((), generator=generator) < 0.5):
            image = TF.hflip(image)
        return image


@dataclass(frozen=True)
class ViewEvalTransform:
    """source -> ``[K, 3, size, size]``: the test view's K inputs (``resize``: K = 1). A dataset listed in
    ``dataset_resize`` has its short side resized first under a ``crops`` view, as in training."""

    view: View
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: int = 224
    patch: int = 16
    max_pixels: int = 200_000_000
    dataset_resize: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        if self.view.kind == "full":
            raise ValueError("a recipe's test view must be resize or crops:N (full has one input of a varying "
                             "size per image, which training batches cannot stack); score with --view full")

    def view_for(self, dataset: str | None) -> View:
        short = _short_side(None, self.dataset_resize, dataset)
        if short is not None and self.view.kind == "crops" and self.view.pre_resize is None:
            return replace(self.view, pre_resize=short)
        return self.view

    def __call__(self, source, generator: torch.Generator | None = None, dataset: str | None = None) -> torch.Tensor:
        transform = ViewTransform(self.view_for(dataset), size=self.size, patch=self.patch, mean=self.mean,
                                  std=self.std)
        image = load_rgb(source, target_short_side=transform.decode_short_side, max_pixels=self.max_pixels)
        return transform(image).pixels


def make_eval_transform(view: str | View, info, *, patch: int = 16,
                        dataset_resize: tuple[tuple[str, int], ...] = ()) -> ViewEvalTransform:
    """The evaluation transform of a test view for a backbone (``BackboneInfo``)."""
    return ViewEvalTransform(parse_view(view), tuple(info.mean), tuple(info.std), size=info.image_size,
                             patch=patch, dataset_resize=dataset_resize)
