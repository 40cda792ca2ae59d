"""Convolutional patch stems composed onto an open_clip ViT (hybrid CLIP), for the built-in model.

A ViT's patch embedding (``visual.conv1``: one linear map of each 32x32 patch) has to learn, from few
images, what a quality model needs most: local contrast statistics. The stems here replace ``conv1``
by composition (the attribute is swapped; open_clip's transformer is untouched) with

1. ``LocalNormalizationPlanes``: the input pixels plus mean-subtracted contrast-normalised (MSCN)
   planes of luma at two scales and of the two chroma channels. MSCN coefficients (Ruderman 1994;
   BRISQUE/NIQE, Mittal et al. 2012/2013) are ``(I - mu) / (sigma + C)`` with ``mu``/``sigma`` the
   Gaussian-weighted local mean and deviation (7x7 window, sigma 7/6). Their distribution is what
   blur (narrower), noise (wider, heavier tails) and blocking (structured) change, and it is
   invariant to exposure and contrast, which the raw pixel planes keep.
2. ``ConvPatchStem``: strided convolutions (4x4/s4, then 3x3/s2 convolutions with GroupNorm + GELU)
   down to the ViT's patch grid; its output has exactly the shape ``conv1`` had ([B, width, H/p, W/p]).

Which architectures get a stem is data (``configs/stems.json``): an architecture listed there is
built by open_clip as usual and then receives its stem, before any weights are loaded, so a
checkpoint holds the stem's tensors under ``visual.conv1.*``.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

# ITU-R BT.601 luma / chroma weights (on [0, 1] RGB); the same definition as data.synthetic.colour.
_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


def gaussian_taps(sigma: float, radius: int) -> torch.Tensor:
    """Normalised 1-D Gaussian taps [2*radius+1] (float32)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).to(torch.float32)


def gaussian_blur(planes: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Blur [B, C, H, W] with the 2-D kernel ``taps`` x ``taps`` (outer product), replicate-padded: same shape.

    One depthwise KxK convolution: on CPUs it is 2x faster than two 1-D passes and 3-4x faster than
    summing shifted slices for K = 7 (measured on 16 x 224 x 224 planes, AMD EPYC, 2 threads), and the
    front end's cost is most of this small model's.
    """
    radius = (taps.numel() - 1) // 2
    channels = planes.shape[1]
    kernel = (taps.view(-1, 1) * taps.view(1, -1)).to(planes.dtype)
    kernel = kernel.view(1, 1, *kernel.shape).expand(channels, 1, -1, -1)
    return F.conv2d(F.pad(planes, (radius, radius, radius, radius), mode="replicate"), kernel, groups=channels)


def mscn(planes: torch.Tensor, taps: torch.Tensor, stabiliser: float) -> torch.Tensor:
    """Mean-subtracted contrast-normalised coefficients of [B, C, H, W] planes (same shape).

    ``(I - mu) / (sigma + C)`` with ``mu = G * I`` and ``sigma = sqrt(|G * I^2 - mu^2|)`` for the
    Gaussian kernel G (Mittal et al., BRISQUE Eq. 1-3); ``C`` keeps flat regions finite.
    """
    channels = planes.shape[1]
    blurred = gaussian_blur(torch.cat([planes, planes * planes], dim=1), taps)   # one pass for both moments
    mu, second = blurred[:, :channels], blurred[:, channels:]
    var = second - mu * mu
    return (planes - mu) / (var.clamp_min(0.0).sqrt() + stabiliser)


class LocalNormalizationPlanes(nn.Module):
    """[B, 3, H, W] CLIP-normalised pixels -> [B, 3 + luma_scales + 2*chroma, H, W].

    The input is first mapped back to [0, 1] RGB with the backbone's ``mean``/``std``. Channel order:
    the 3 input channels unchanged, luma MSCN at scales 1..luma_scales (scale s is computed on the
    2^(s-1)x average-pooled luma and repeated back to full size), then Cb and Cr MSCN. Intensities are
    on a 0..1 scale, so the stabiliser is 1/255 (the classical C = 1 on 0..255 images).
    """

    def __init__(self, mean, std, luma_scales: int = 2, chroma: bool = True,
                 sigma: float = 7.0 / 6.0, radius: int = 3):
        super().__init__()
        if luma_scales < 1:
            raise ValueError(f"luma_scales must be >= 1, got {luma_scales}")
        self.luma_scales = int(luma_scales)
        self.chroma = bool(chroma)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("to_ycbcr", torch.tensor(_YCBCR, dtype=torch.float32), persistent=False)
        self.register_buffer("taps", gaussian_taps(sigma, radius), persistent=False)
        self.stabiliser = 1.0 / 255.0

    @property
    def out_channels(self) -> int:
        return 3 + self.luma_scales + (2 if self.chroma else 0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        rgb = pixels * self.std + self.mean
        ycbcr = torch.einsum("ck,bkhw->bchw", self.to_ycbcr, rgb)
        luma = ycbcr[:, :1]
        # full resolution: luma (and chroma) normalised in one pass
        full = mscn(ycbcr if self.chroma else luma, self.taps, self.stabiliser)
        planes = [pixels, full[:, :1]]
        for scale in range(1, self.luma_scales):
            factor = 2 ** scale
            # ceil_mode: any image size (the `full` view); the last partial cell averages what it covers
            pooled = F.avg_pool2d(luma, factor, ceil_mode=True)
            coarse = mscn(pooled, self.taps, self.stabiliser)
            coarse = coarse.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
            planes.append(coarse[..., :luma.shape[-2], :luma.shape[-1]])
        if self.chroma:
            planes.append(full[:, 1:])
        return torch.cat(planes, dim=1)


def _conv_block(cin: int, cout: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, bias=False), nn.GroupNorm(1, cout), nn.GELU())


class ConvPatchStem(nn.Module):
    """Replaces ``visual.conv1``: [B, 3, H, W] -> [B, width, H/patch, W/patch].

    front end (``LocalNormalizationPlanes``) -> 4x4/s4 conv -> log2(patch/4) - 1 3x3/s2 convs, each with
    GroupNorm(1) + GELU, channels ``channels`` -> a final 2x2/s2 linear projection to ``width``.
    Runs in fp32 even under autocast: the MSCN division and the first convolutions see small
    differences between large numbers, which bf16's 8-bit mantissa would erase.
    """

    def __init__(self, width: int, patch_size: int, mean, std, channels=(32, 64, 128),
                 front_end: dict | None = None):
        super().__init__()
        steps = math.log2(patch_size / 4)
        if patch_size < 8 or steps != int(steps):
            raise ValueError(f"ConvPatchStem needs a power-of-two patch size >= 8, got {patch_size}")
        if len(channels) != int(steps):
            raise ValueError(f"patch {patch_size} needs {int(steps)} stem channel widths, got {list(channels)}")
        self.front_end = LocalNormalizationPlanes(mean, std, **(front_end or {}))
        layers = [_conv_block(self.front_end.out_channels, channels[0], 4, 4, 0)]
        for cin, cout in zip(channels[:-1], channels[1:]):
            layers.append(_conv_block(cin, cout, 3, 2, 1))
        self.body = nn.Sequential(*layers)
        self.project = nn.Conv2d(channels[-1], width, 2, 2, 0)
        self.patch_size = patch_size
        # the patch geometry, under the names nn.Conv2d gives it (code that reads the ViT's patch size)
        self.kernel_size = (patch_size, patch_size)
        self.stride = (patch_size, patch_size)

    def macs(self, height: int, width: int) -> int:
        """Multiply-accumulates of the convolutions for one [3, height, width] image: the front end's
        Gaussian blurs (two moments per MSCN plane) and the stem's; the front end's element-wise MSCN
        arithmetic, ~20 operations per pixel, is left out as norms are."""
        front = self.front_end
        k2 = front.taps.numel() ** 2
        total = 2 * (3 if front.chroma else 1) * height * width * k2
        for scale in range(1, front.luma_scales):
            f = 2 ** scale
            total += 2 * (-(-height // f)) * (-(-width // f)) * k2
        h, w = height, width
        for layer in [block[0] for block in self.body] + [self.project]:
            k, st, pad = layer.kernel_size[0], layer.stride[0], layer.padding[0]
            h, w = (h + 2 * pad - k) // st + 1, (w + 2 * pad - k) // st + 1
            total += h * w * layer.out_channels * layer.in_channels * k * k
        return total

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=pixels.device.type, enabled=False):
            x = self.front_end(pixels.float())
            x = self.body(x)
            return self.project(x)


@lru_cache(maxsize=1)
def stem_settings() -> dict[str, dict]:
    """Architecture name -> stem settings, from ``configs/stems.json``."""
    text = resources.files("perceptiq.backbones").joinpath("configs", "stems.json").read_text()
    return json.loads(text)


def install_conv_stem(model: nn.Module, arch: str, mean, std) -> bool:
    """Swap ``model.visual.conv1`` for a ``ConvPatchStem`` if ``arch`` is listed in stems.json.

    Returns True when a stem was installed. Must run before weights are loaded (the checkpoint's
    ``visual.conv1.*`` tensors are the stem's).
    """
    settings = stem_settings().get(arch)
    if settings is None:
        return False
    visual = model.visual
    patch = visual.conv1.kernel_size[0]
    width = visual.conv1.out_channels
    visual.conv1 = ConvPatchStem(width, patch, mean, std, channels=tuple(settings["channels"]),
                                 front_end=settings.get("front_end"))
    return True
