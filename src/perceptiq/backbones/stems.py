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

from .autocast_policy import to_residual_stream

#: Inference runs the stem on this many pixels at a time (2 crops of 224 x 224). Per chunk the front
#: end and the convolutions allocate ~20 planes of temporaries; at 2 crops these stay below glibc's heap
#: trim threshold, so freed memory is reused instead of being handed back to the kernel and faulted in
#: again at the next chunk. System CPU time per image end to end (perceptiq-tiny, crops:4, 1 thread,
#: Intel AMX-BF16, shared machine): 2.8 ms at 1 or 2 crops per chunk, 12 ms at 4 or 8, 29 ms with the
#: whole batch of 32 crops in one call (before chunking).
INFERENCE_CHUNK_PIXELS = 2 * 224 * 224

# ITU-R BT.601 luma / chroma weights (on [0, 1] RGB); the same definition as data.synthetic.colour.
_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


def gaussian_taps(sigma: float, radius: int) -> torch.Tensor:
    """Normalised 1-D Gaussian taps [2*radius+1] (float32)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).to(torch.float32)


def gaussian_blur(planes: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Blur [B, C, H, W] with the 2-D kernel ``taps`` x ``taps`` (outer product), replicate-padded: same shape."""
    radius = (taps.numel() - 1) // 2
    return blur_padded(F.pad(planes, (radius, radius, radius, radius), mode="replicate"), taps)


def blur_padded(padded: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Blur already padded planes: [B, C, H + 2r, W + 2r] -> [B, C, H, W] (r = radius of ``taps``).

    One depthwise KxK convolution with the batch folded into the channels ([1, B*C, ...], groups B*C):
    the same sums per output pixel as a [B, C] depthwise convolution (bit for bit equal on the CPUs
    measured), but oneDNN's depthwise kernel vectorises over channels in blocks of 16, so C = 6 planes
    filled 6 of 16 lanes; B*C fills them (0.5 vs 1.7 ms per 6-plane 224 x 224 crop, Intel AMX-BF16 CPU,
    1 thread). On CPUs, one KxK convolution was 2x faster than two 1-D passes and 3-4x faster than
    summing shifted slices for K = 7 (16 x 224 x 224 planes, AMD EPYC, 2 threads).
    """
    batch, channels, height, width = padded.shape
    kernel = (taps.view(-1, 1) * taps.view(1, -1)).to(padded.dtype)
    kernel = kernel.view(1, 1, *kernel.shape).expand(batch * channels, 1, -1, -1)
    folded = padded.reshape(1, batch * channels, height, width)
    out = F.conv2d(folded, kernel, groups=batch * channels)
    return out.view(batch, channels, out.shape[-2], out.shape[-1])


def replicate_border_(padded: torch.Tensor, radius: int) -> torch.Tensor:
    """Fill the ``radius``-wide border of [..., H + 2r, W + 2r] from its interior's edge rows and columns,
    in place (what ``F.pad(mode="replicate")`` writes around the interior); returns ``padded``."""
    r = radius
    if r == 0:
        return padded
    padded[..., :r, r:-r] = padded[..., r:r + 1, r:-r]
    padded[..., -r:, r:-r] = padded[..., -r - 1:-r, r:-r]
    padded[..., :, :r] = padded[..., :, r:r + 1]
    padded[..., :, -r:] = padded[..., :, -r - 1:-r]
    return padded


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


def mscn_parts_padded_(padded: torch.Tensor, taps: torch.Tensor,
                       stabiliser: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``mscn`` of planes that sit in a padded work buffer, as (centred, scale) with MSCN = centred / scale.

    padded: [B, 2C, H + 2r, W + 2r]; planes 0..C-1 hold the planes with their border already replicated
    (``replicate_border_``), planes C..2C-1 are overwritten with their squares. Returns ``centred = I - mu``
    and ``scale = sigma + C``, each [B, C, H, W] (views into one new tensor), so that the caller divides
    straight into where the coefficients go. The same floating-point operations in the same order as
    ``mscn``; only copies and allocations are saved. Writes in place: not for autograd or ``torch.func``.
    """
    channels = padded.shape[1] // 2
    radius = (taps.numel() - 1) // 2
    planes = padded[:, :channels]
    torch.mul(planes, planes, out=padded[:, channels:])
    blurred = blur_padded(padded, taps)
    mu, second = blurred[:, :channels], blurred[:, channels:]
    scale = second.sub_(mu * mu).clamp_min_(0.0).sqrt_().add_(stabiliser)
    interior = planes[..., radius:planes.shape[-2] - radius, radius:planes.shape[-1] - radius]
    return torch.sub(interior, mu, out=mu), scale


def _plain(tensor: torch.Tensor) -> bool:
    """True when ``tensor`` may go through in-place arithmetic: no gradient wanted through it, not a
    ``torch.func`` (vmap/grad) wrapper, no graph being compiled."""
    if torch.compiler.is_compiling() or (torch.is_grad_enabled() and tensor.requires_grad):
        return False
    try:
        return not torch._C._functorch.is_functorch_wrapped_tensor(tensor)
    except AttributeError:   # a torch without functorch internals
        return True


class LocalNormalizationPlanes(nn.Module):
    """[B, 3, H, W] CLIP-normalised pixels -> [B, 3 + luma_scales + 2*chroma, H, W].

    The input is first mapped back to [0, 1] RGB with the backbone's ``mean``/``std``. Channel order:
    the 3 input channels (unchanged, or with ``rgb_pool`` > 1 averaged over rgb_pool x rgb_pool cells
    and repeated back, so that they carry colour and exposure but no pixel-level colour detail, which
    is left to the MSCN planes: docs/builtin-model.md "Chroma resolution"), luma MSCN at scales
    1..luma_scales (scale s is computed on the 2^(s-1)x average-pooled luma and repeated back to full
    size), then Cb and Cr MSCN (with ``chroma_pool`` > 1 computed on chroma averaged over
    chroma_pool x chroma_pool cells and repeated back). Intensities are
    on a 0..1 scale, so the stabiliser is 1/255 (the classical C = 1 on 0..255 images).

    Two implementations of the same arithmetic: ``reference`` (the definition; any autograd, vmap or
    compile context) and ``fast`` (whenever ``_plain``: scoring, and training too, since the front end
    has no parameters and its pixels need no gradient). ``fast`` writes each plane into its place in one
    output buffer and pads in place instead of concatenating and copying; it gives the reference's values
    bit for bit on the CPUs measured, and tests/backbones/test_stems.py holds it to the reference's fp32
    accuracy against fp64 elsewhere. CPU time per 224 x 224 crop (Intel AMX-BF16, 1 thread, shared
    machine): reference 8-9 ms in calls of 32 crops, fast 2.0-2.7 ms in calls of 2-8 crops
    (``INFERENCE_CHUNK_PIXELS``), of which the 6-plane blur is ~0.6.
    """

    def __init__(self, mean, std, luma_scales: int = 2, chroma: bool = True,
                 sigma: float = 7.0 / 6.0, radius: int = 3, rgb_pool: int = 1, chroma_pool: int = 1):
        super().__init__()
        if luma_scales < 1:
            raise ValueError(f"luma_scales must be >= 1, got {luma_scales}")
        if rgb_pool < 1 or chroma_pool < 1:
            raise ValueError(f"rgb_pool and chroma_pool must be >= 1, got {rgb_pool}, {chroma_pool}")
        self.luma_scales = int(luma_scales)
        self.chroma = bool(chroma)
        self.rgb_pool = int(rgb_pool)
        self.chroma_pool = int(chroma_pool)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("to_ycbcr", torch.tensor(_YCBCR, dtype=torch.float32), persistent=False)
        self.register_buffer("taps", gaussian_taps(sigma, radius), persistent=False)
        self.stabiliser = 1.0 / 255.0

    @property
    def out_channels(self) -> int:
        return 3 + self.luma_scales + (2 if self.chroma else 0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.fast(pixels) if _plain(pixels) else self.reference(pixels)

    def reference(self, pixels: torch.Tensor) -> torch.Tensor:
        """The definition (class docstring): [B, 3, H, W] -> [B, out_channels, H, W]."""
        rgb = pixels * self.std + self.mean
        ycbcr = torch.einsum("ck,bkhw->bchw", self.to_ycbcr, rgb)
        luma = ycbcr[:, :1]
        # full resolution: luma (and chroma, unless pooled) normalised in one pass
        full = mscn(ycbcr if self._full_chroma else luma, self.taps, self.stabiliser)
        colour = pixels if self.rgb_pool == 1 else _repeated(
            F.avg_pool2d(pixels, self.rgb_pool, ceil_mode=True), self.rgb_pool, pixels.shape[-2:])
        planes = [colour, full[:, :1]]
        for scale in range(1, self.luma_scales):
            factor = 2 ** scale
            # ceil_mode: any image size (the `full` view); the last partial cell averages what it covers
            pooled = F.avg_pool2d(luma, factor, ceil_mode=True)
            planes.append(_repeated(mscn(pooled, self.taps, self.stabiliser), factor, luma.shape[-2:]))
        if self._full_chroma:
            planes.append(full[:, 1:])
        elif self.chroma:
            pooled = F.avg_pool2d(ycbcr[:, 1:], self.chroma_pool, ceil_mode=True)
            planes.append(_repeated(mscn(pooled, self.taps, self.stabiliser), self.chroma_pool, luma.shape[-2:]))
        return torch.cat(planes, dim=1)

    @property
    def _full_chroma(self) -> bool:
        return self.chroma and self.chroma_pool == 1

    def fast(self, pixels: torch.Tensor) -> torch.Tensor:
        """``reference``'s values without its copies: [B, 3, H, W] -> [B, out_channels, H, W] (contiguous).
        Writes in place; ``forward`` sends autograd, vmap and compile inputs to ``reference``."""
        batch, _, height, width = pixels.shape
        radius = (self.taps.numel() - 1) // 2
        out = pixels.new_empty((batch, self.out_channels, height, width))
        if self.rgb_pool == 1:
            out[:, :3] = pixels
        else:
            _repeat_into(out[:, :3], F.avg_pool2d(pixels, self.rgb_pool, ceil_mode=True), self.rgb_pool)
        rgb = (pixels * self.std).add_(self.mean)
        planes = 3 if self._full_chroma else 1
        # Y (Cb Cr) into the interior of a padded buffer whose second half will hold the squares
        ycbcr = torch.matmul(self.to_ycbcr[:planes], rgb.reshape(batch, 3, height * width))
        ycbcr = ycbcr.view(batch, planes, height, width)
        work = pixels.new_empty((batch, 2 * planes, height + 2 * radius, width + 2 * radius))
        work[:, :planes, radius:radius + height, radius:radius + width] = ycbcr
        replicate_border_(work[:, :planes], radius)
        centred, scale = mscn_parts_padded_(work, self.taps, self.stabiliser)
        torch.div(centred[:, :1], scale[:, :1], out=out[:, 3:4])
        first = 3 + self.luma_scales
        if self._full_chroma:
            torch.div(centred[:, 1:], scale[:, 1:], out=out[:, first:first + 2])
        elif self.chroma:
            chroma = torch.matmul(self.to_ycbcr[1:], rgb.reshape(batch, 3, height * width)).view(batch, 2, height, width)
            pooled = F.avg_pool2d(chroma, self.chroma_pool, ceil_mode=True)
            _repeat_into(out[:, first:first + 2], mscn(pooled, self.taps, self.stabiliser), self.chroma_pool)
        luma = ycbcr[:, :1]
        for step in range(1, self.luma_scales):
            factor = 2 ** step
            pooled = F.avg_pool2d(luma, factor, ceil_mode=True)
            h, w = pooled.shape[-2:]
            coarse_work = pixels.new_empty((batch, 2, h + 2 * radius, w + 2 * radius))
            coarse_work[:, :1, radius:radius + h, radius:radius + w] = pooled
            replicate_border_(coarse_work[:, :1], radius)
            centred, scale = mscn_parts_padded_(coarse_work, self.taps, self.stabiliser)
            _repeat_into(out[:, 3 + step:4 + step], centred.div_(scale), factor)     # coarse: [B, 1, h, w]
        return out


def _repeated(coarse: torch.Tensor, factor: int, size) -> torch.Tensor:
    """[B, C, h, w] -> [B, C, H, W]: each value repeated factor x factor times, cut to ``size`` (H, W)."""
    return coarse.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)[..., :size[0], :size[1]]


def _repeat_into(target: torch.Tensor, coarse: torch.Tensor, factor: int) -> None:
    """``_repeated`` written in place into ``target`` [B, C, H, W], without the intermediate copies."""
    batch, channels, h, w = coarse.shape
    height, width = target.shape[-2:]
    repeated = coarse[:, :, :, None, :, None].expand(batch, channels, h, factor, w, factor)
    if (h * factor, w * factor) == (height, width):      # a channel slice of a contiguous buffer views fine
        target.view(batch, channels, h, factor, w, factor).copy_(repeated)
    else:
        target.copy_(repeated.reshape(batch, channels, h * factor, w * factor)[..., :height, :width])


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
        total = 2 * (3 if front._full_chroma else 1) * height * width * k2
        cells = [(2 ** scale, 1) for scale in range(1, front.luma_scales)]
        if front.chroma and not front._full_chroma:
            cells.append((front.chroma_pool, 2))
        for f, planes in cells:
            total += 2 * planes * (-(-height // f)) * (-(-width // f)) * k2
        h, w = height, width
        for layer in [block[0] for block in self.body] + [self.project]:
            k, st, pad = layer.kernel_size[0], layer.stride[0], layer.padding[0]
            h, w = (h + 2 * pad - k) // st + 1, (w + 2 * pad - k) // st + 1
            total += h * w * layer.out_channels * layer.in_channels * k * k
        return total

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, width, H/patch, W/patch]; without autograd, in chunks of
        ``INFERENCE_CHUNK_PIXELS`` (the samples are independent: the same values, bit for bit)."""
        with torch.autocast(device_type=pixels.device.type, enabled=False):
            # fp32, or fp64 in a model converted to fp64 (the reference runs of tests)
            pixels = pixels.to(torch.float64 if self.project.weight.dtype == torch.float64 else torch.float32)
            chunk = max(1, INFERENCE_CHUNK_PIXELS // max(1, pixels.shape[-2] * pixels.shape[-1]))
            if torch.is_grad_enabled() or pixels.shape[0] <= chunk:
                embeddings = self._embed(pixels)
            else:
                embeddings = torch.cat([self._embed(part) for part in pixels.split(chunk)])
        return to_residual_stream(embeddings)   # bf16 for bf16 inference (autocast_policy.py, adjustment 3)

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.project(self.body(self.front_end(pixels)))


@lru_cache(maxsize=1)
def stem_settings() -> dict[str, dict]:
    """Architecture name -> stem settings, from ``configs/stems.json``."""
    text = resources.files("perceptiq.backbones").joinpath("configs", "stems.json").read_text()
    return json.loads(text)


#: The keys of one architecture's stem settings (configs/stems.json, a recipe's ``model.stem``).
STEM_KEYS = ("channels", "front_end")


def _front_end_keys() -> list[str]:
    import inspect

    return [name for name in inspect.signature(LocalNormalizationPlanes.__init__).parameters
            if name not in ("self", "mean", "std")]


def resolve_stem(arch: str, override: dict | None = None) -> dict | None:
    """The stem settings ``arch`` is built with: configs/stems.json's, with ``override`` on top.

    ``override`` (a recipe's ``model.stem``, or the ``"stem"`` a checkpoint recorded) may give
    ``channels`` and any ``front_end`` keys; the front end is merged key by key, so
    ``{"front_end": {"rgb_pool": 4}}`` keeps the file's other front-end settings. None for an
    architecture without a stem; an override for one, or an unknown key, is refused with a hint.
    """
    from ..suggestions import refuse_unknown_keys

    base = stem_settings().get(arch)
    if not override:
        return None if base is None else json.loads(json.dumps(base))
    if base is None:
        hybrid = ", ".join(sorted(stem_settings()))
        raise ValueError(f"stem settings {json.dumps(override, sort_keys=True)} given for {arch}, which has no "
                         f"convolutional stem (architectures with one: {hybrid})")
    refuse_unknown_keys(override, STEM_KEYS, what="stem setting")
    front_end = override.get("front_end") or {}
    refuse_unknown_keys(front_end, _front_end_keys(), what="front_end setting")
    settings = json.loads(json.dumps(base))
    if "channels" in override:
        settings["channels"] = list(override["channels"])
    settings["front_end"] = {**settings.get("front_end", {}), **front_end}
    return settings


def check_shipped_stem(trained: dict | None, built: dict | None, where: str) -> None:
    """Refuse shipped weights trained with other stem settings than the backbone was built with: the
    tensors would load (same shapes) into a front end that computes other planes, and score silently
    wrong."""
    if trained != built:
        raise ValueError(f"{where} was trained with the stem settings {json.dumps(trained, sort_keys=True)}, "
                         f"but the backbone was built with {json.dumps(built, sort_keys=True)}; "
                         "load the weights with the perceptiq that made them, or rebuild them with this one")


def install_conv_stem(model: nn.Module, arch: str, mean, std, settings: dict | None = None) -> bool:
    """Swap ``model.visual.conv1`` for a ``ConvPatchStem`` if ``arch`` is listed in stems.json.

    ``settings``: the stem settings to build (``resolve_stem``); None builds stems.json's. Returns True
    when a stem was installed. Must run before weights are loaded (the checkpoint's ``visual.conv1.*``
    tensors are the stem's).
    """
    settings = settings if settings is not None else stem_settings().get(arch)
    if settings is None:
        return False
    visual = model.visual
    patch = visual.conv1.kernel_size[0]
    width = visual.conv1.out_channels
    visual.conv1 = ConvPatchStem(width, patch, mean, std, channels=tuple(settings["channels"]),
                                 front_end=settings.get("front_end"))
    return True
