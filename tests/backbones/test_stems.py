"""The hybrid CLIP's convolutional stem: MSCN planes equal the classical definition, the stem replaces
the ViT patch embedding by composition, and its weights travel with the checkpoint."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from perceptiq.backbones import create_backbone
from perceptiq.backbones.stems import ConvPatchStem, LocalNormalizationPlanes, gaussian_taps, mscn, gaussian_blur


def test_gaussian_blur_equals_scipy_gaussian_filter_with_edge_replication():
    rng = np.random.default_rng(0)
    planes = rng.random((2, 3, 37, 29)).astype(np.float32)
    sigma, radius = 7 / 6, 3
    ours = gaussian_blur(torch.from_numpy(planes), gaussian_taps(sigma, radius)).numpy()
    reference = ndimage.gaussian_filter(planes.astype(np.float64), sigma=(0, 0, sigma, sigma), mode="nearest",
                                        truncate=radius / sigma)
    # fp32 sums of 7 taps per axis of values in [0, 1]: error a few fp32 ulps of 1
    np.testing.assert_allclose(ours, reference, rtol=0, atol=8 * np.finfo(np.float32).eps)


def test_mscn_is_mean_subtracted_contrast_normalised():
    rng = np.random.default_rng(1)
    grey = rng.random((1, 1, 40, 40))
    sigma, radius, c = 7 / 6, 3, 1 / 255
    mu = ndimage.gaussian_filter(grey, (0, 0, sigma, sigma), mode="nearest", truncate=radius / sigma)
    var = ndimage.gaussian_filter(grey ** 2, (0, 0, sigma, sigma), mode="nearest", truncate=radius / sigma) - mu ** 2
    expected = (grey - mu) / (np.sqrt(np.abs(var)) + c)
    ours = mscn(torch.from_numpy(grey.astype(np.float32)), gaussian_taps(sigma, radius), c).numpy()
    # the division amplifies fp32 rounding of mu and sigma by about 1 / (sigma + c) <= 255
    np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=255 * 16 * np.finfo(np.float32).eps)


def test_planes_keep_the_pixels_and_respond_to_blur_not_to_exposure():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    front = LocalNormalizationPlanes(mean, std, luma_scales=2, chroma=True)
    assert front.out_channels == 7
    rng = np.random.default_rng(2)
    rgb = torch.from_numpy(rng.random((1, 3, 32, 32)).astype(np.float32)) * 0.5 + 0.25
    pixels = (rgb - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    out = front(pixels)
    assert out.shape == (1, 7, 32, 32)
    torch.testing.assert_close(out[:, :3], pixels)
    # MSCN is invariant to a contrast change that keeps away from the stabiliser
    scaled = (rgb * 0.8 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(front(scaled)[:, 3], out[:, 3], atol=0.05)
    # blur shrinks the luma MSCN energy
    blurred = torch.from_numpy(ndimage.gaussian_filter(rgb.numpy(), (0, 0, 2, 2)))
    blurred_pixels = (blurred - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert front(blurred_pixels)[:, 3].abs().mean() < 0.7 * out[:, 3].abs().mean()


def test_stem_has_the_patch_embedding_shape_and_refuses_bad_patch_sizes():
    stem = ConvPatchStem(48, 32, (0.5,) * 3, (0.25,) * 3, channels=(8, 16, 24))
    assert stem(torch.randn(2, 3, 224, 224)).shape == (2, 48, 7, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert stem(torch.randn(1, 3, 64, 64)).dtype == torch.float32
    with pytest.raises(ValueError, match="patch 32 needs 3 stem channel widths"):
        ConvPatchStem(48, 32, (0.5,) * 3, (0.25,) * 3, channels=(8, 16))
    with pytest.raises(ValueError, match="power-of-two"):
        ConvPatchStem(48, 14, (0.5,) * 3, (0.25,) * 3, channels=(8,))


def test_hybrid_architecture_gets_its_stem_and_round_trips_through_a_weights_file(tmp_path):
    from safetensors.torch import save_file

    first = create_backbone("perceptiq-tiny", "random", seed=1)
    assert isinstance(first.clip.visual.conv1, ConvPatchStem)
    state = first.clip.state_dict()
    assert any(k.startswith("visual.conv1.body.") for k in state)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    second = create_backbone("perceptiq-tiny", str(path))
    pixels = torch.randn(2, 3, 224, 224)
    torch.testing.assert_close(second.encode_image(pixels), first.encode_image(pixels), rtol=0, atol=0)
    assert not isinstance(create_backbone("test-tiny", "random").clip.visual.conv1, ConvPatchStem)


def test_front_end_takes_any_image_size():
    front = LocalNormalizationPlanes((0.5,) * 3, (0.25,) * 3, luma_scales=2, chroma=True)
    out = front(torch.randn(1, 3, 231, 301))
    assert out.shape == (1, 7, 231, 301) and torch.isfinite(out).all()


def test_stem_macs_match_the_flop_counter():
    from perceptiq.benchmark.flops import count_flops

    stem = ConvPatchStem(48, 32, (0.5,) * 3, (0.25,) * 3, channels=(8, 16, 24))
    counted = count_flops(stem, torch.zeros(1, 3, 224, 224))
    conv_flops = sum(v for k, v in counted.by_op.items() if "conv" in str(k))
    assert conv_flops == 2 * stem.macs(224, 224)
    assert stem.kernel_size == (32, 32)
