"""Image transforms for training and evaluation (picklable, so DataLoader workers can run them).

Train: decode (short side resized to ``resize``) -> random ``crop`` x ``crop`` crop -> random horizontal
flip -> CLIP normalisation (Gamma section A.2: "random cropping and random horizontal flipping").
Eval: decode (short side ``resize``) -> centre crop -> CLIP normalisation, exactly what ``perceptiq score``
does, so a model is trained on the geometry it is tested on (docs/training.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision.transforms.functional as TF
from PIL import Image

from ..imaging.decode import load_rgb


@dataclass(frozen=True)
class ImageTransform:
    """source (path/bytes/PIL) -> [3, crop, crop] float tensor.

    resize: short side after decoding (None keeps the native size); crop: output side;
    train: random crop + flip when True, centre crop when False.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: int | None = 224
    crop: int = 224
    train: bool = False
    hflip: bool = True
    max_pixels: int = 200_000_000

    def __call__(self, source, generator: torch.Generator | None = None) -> torch.Tensor:
        image = load_rgb(source, target_short_side=self.resize, max_pixels=self.max_pixels)
        if self.resize is not None and min(image.size) != self.resize:
            image = TF.resize(image, self.resize, interpolation=TF.InterpolationMode.BICUBIC)
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
