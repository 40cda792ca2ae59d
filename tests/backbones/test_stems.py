"""The hybrid CLIP's convolutional stem: MSCN planes equal the classical definition, the stem replaces
the ViT patch embedding by composition, and its weights travel with the checkpoint."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from perceptiq.backbones import create_backbone
from perceptiq.backbones.stems import _YCBCR as _YCBCR_ROWS
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


def test_pooled_colour_planes_are_cell_means_and_leave_the_mscn_planes_alone():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    plain, pooled = LocalNormalizationPlanes(mean, std), LocalNormalizationPlanes(mean, std, rgb_pool=4)
    assert pooled.out_channels == plain.out_channels == 7
    pixels = torch.randn(2, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    out, ref = pooled(pixels), plain(pixels)
    torch.testing.assert_close(out[:, 3:], ref[:, 3:])          # the MSCN planes see the full-resolution image
    for i, j in [(0, 0), (5, 7), (11, 9)]:                        # (11, 9): the last, partial cell (rows 8-11, cols 8-9)
        r, c = 4 * (i // 4), 4 * (j // 4)
        torch.testing.assert_close(out[:, :3, i, j], pixels[:, :3, r:r + 4, c:c + 4].mean(dim=(-2, -1)))
    with pytest.raises(ValueError, match="rgb_pool and chroma_pool must be >= 1"):
        LocalNormalizationPlanes(mean, std, rgb_pool=0)
    # chroma_pool: the Cb/Cr MSCN planes are those of the 2 x 2-averaged chroma, repeated
    half = LocalNormalizationPlanes(mean, std, chroma_pool=2)(pixels)
    torch.testing.assert_close(half[:, :5], ref[:, :5])
    rgb = pixels * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    chroma = torch.einsum("ck,bkhw->bchw", half.new_tensor(_YCBCR_ROWS[1:]), rgb)
    front = LocalNormalizationPlanes(mean, std)
    expected = mscn(torch.nn.functional.avg_pool2d(chroma, 2), front.taps, front.stabiliser)
    # another order of fp32 operations (matmul vs einsum): the MSCN division amplifies its rounding by
    # up to 1 / (sigma + c) <= 255, as in test_mscn_is_mean_subtracted_contrast_normalised
    tol = dict(rtol=1e-3, atol=255 * 16 * float(np.finfo(np.float32).eps))
    torch.testing.assert_close(half[:, 5:, ::2, ::2], expected, **tol)
    torch.testing.assert_close(half[:, 5:, 1::2, 1::2], expected, **tol)


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


@pytest.mark.parametrize("front_end", [None, {"chroma_pool": 2, "rgb_pool": 4}])
def test_stem_macs_match_the_flop_counter(front_end):
    from perceptiq.benchmark.flops import count_flops

    stem = ConvPatchStem(48, 32, (0.5,) * 3, (0.25,) * 3, channels=(8, 16, 24), front_end=front_end)
    counted = count_flops(stem, torch.zeros(1, 3, 224, 224))
    conv_flops = sum(v for k, v in counted.by_op.items() if "conv" in str(k))
    assert conv_flops == 2 * stem.macs(224, 224)
    assert stem.kernel_size == (32, 32)


@pytest.mark.parametrize("options, shape", [
    ({}, (3, 3, 48, 40)),                               # the shipped front end
    ({}, (1, 3, 37, 29)),                               # odd sizes: the coarse scale's partial cells
    ({"chroma": False}, (2, 3, 32, 32)),
    ({"luma_scales": 3}, (2, 3, 50, 45)),
    ({"rgb_pool": 4}, (2, 3, 48, 40)),                  # pooled colour planes
    ({"rgb_pool": 4}, (1, 3, 37, 29)),                  # ... with partial cells
    ({"rgb_pool": 4, "chroma_pool": 2}, (2, 3, 48, 40)),  # colour only at reduced resolution
    ({"chroma_pool": 2}, (1, 3, 37, 29)),
])
def test_fast_front_end_is_as_accurate_as_the_reference(options, shape):
    """``fast`` (in place, no concatenations) computes what ``reference`` defines. Both are compared with the
    reference in fp64, so a different order of fp32 operations on another CPU passes while a wrong plane,
    border or scale does not (they are bit for bit equal on the CPUs measured)."""
    from ..rounding import assert_as_accurate

    mean, std = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
    front = LocalNormalizationPlanes(mean, std, **options)
    pixels = torch.randn(*shape, generator=torch.Generator().manual_seed(3)).clamp(-1.8, 2.1)
    with torch.no_grad():
        fast, reference = front.fast(pixels), front.reference(pixels)
        exact = LocalNormalizationPlanes(mean, std, **options).double().reference(pixels.double())
    assert fast.shape == reference.shape == (shape[0], front.out_channels, *shape[2:])
    for channel in range(front.out_channels):      # per plane: the pixels' planes must not hide an MSCN one
        assert_as_accurate(fast[:, channel], reference[:, channel], exact[:, channel], reduction_length=49,
                           what=f"plane {channel}")


def test_front_end_takes_the_fast_path_only_where_nothing_differentiates_through_it(monkeypatch):
    front = LocalNormalizationPlanes((0.5,) * 3, (0.25,) * 3)
    pixels = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(4))
    taken = []
    for name in ("fast", "reference"):
        original = getattr(front, name)
        monkeypatch.setattr(front, name, lambda x, original=original, name=name: taken.append(name) or original(x))
    with torch.inference_mode():
        front(pixels)
    front(pixels)                                   # training: grad mode on, but no gradient wanted
    assert taken == ["fast", "fast"]
    wanted = pixels.clone().requires_grad_(True)
    front(wanted)[:, 3:].square().sum().backward()  # a gradient through the MSCN planes: the reference
    assert taken[-1] == "reference" and torch.isfinite(wanted.grad).all() and wanted.grad.abs().sum() > 0
    batched = torch.func.vmap(front)(pixels.unsqueeze(1))          # torch.func: the reference as well
    assert taken[-1] == "reference" and batched.shape == (2, 1, 7, 24, 24)


def test_stem_scores_in_chunks_what_it_computes_in_one_pass(monkeypatch):
    """Inference runs the stem in chunks of INFERENCE_CHUNK_PIXELS (here 2 images of 64 x 64: 5 images give
    chunks of 2, 2, 1); autograd runs one pass. Same values, within fp32 rounding against fp64."""
    from perceptiq.backbones import stems

    from ..rounding import assert_as_accurate

    monkeypatch.setattr(stems, "INFERENCE_CHUNK_PIXELS", 2 * 64 * 64)
    torch.manual_seed(5)
    stem = ConvPatchStem(48, 32, (0.5,) * 3, (0.25,) * 3, channels=(8, 16, 24))
    pixels = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    sizes = []
    embed = stem._embed
    monkeypatch.setattr(stem, "_embed", lambda x: sizes.append(x.shape[0]) or embed(x))
    with torch.inference_mode():
        chunked = stem(pixels)
    assert sizes == [2, 2, 1]
    one_pass = stem(pixels)                          # grad mode: one pass
    assert sizes[-1] == 5
    with torch.inference_mode():
        exact = stem.double()(pixels.double())
    assert chunked.shape == (5, 48, 2, 2)
    assert_as_accurate(chunked, one_pass.detach(), exact, reduction_length=49 + 24 * 9)


def test_stem_feeds_bf16_inference_its_fp32_output_rounded_once():
    """Under ``bf16_residual_stream()`` (bf16 inference, ``autocast_policy.py`` adjustment 3) the stem
    still computes in fp32 and hands the transformer that result rounded to bf16; with gradients, fp32."""
    from perceptiq.backbones.autocast_policy import bf16_residual_stream

    torch.manual_seed(7)
    stem = ConvPatchStem(48, 32, (0.5,) * 3, (0.25,) * 3, channels=(8, 16, 24))
    pixels = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    with torch.inference_mode():
        fp32 = stem(pixels)
    with torch.autocast("cpu", dtype=torch.bfloat16), bf16_residual_stream():
        with torch.inference_mode():
            streamed = stem(pixels)
        trained = stem(pixels)
    assert streamed.dtype == torch.bfloat16 and trained.dtype == torch.float32
    assert torch.equal(streamed, fp32.to(torch.bfloat16))


def test_stem_settings_come_from_the_file_with_a_recipe_override_merged_on_top():
    from perceptiq.backbones.stems import resolve_stem, stem_settings

    import copy

    shipped = copy.deepcopy(stem_settings()["perceptiq-tiny"])
    assert resolve_stem("perceptiq-tiny") == shipped
    resolve_stem("perceptiq-tiny")["front_end"]["chroma_pool"] = 9   # a copy: the file's settings stay
    assert stem_settings()["perceptiq-tiny"] == shipped
    pooled = resolve_stem("perceptiq-tiny", {"front_end": {"chroma_pool": 2}})
    assert pooled == {"channels": shipped["channels"], "front_end": {**shipped["front_end"], "chroma_pool": 2}}
    assert resolve_stem("perceptiq-tiny", {"channels": [16, 32, 64]})["channels"] == [16, 32, 64]
    assert resolve_stem("test-tiny") is None
    with pytest.raises(ValueError, match="unknown front_end setting 'rgb_pol'. Did you mean 'rgb_pool'"):
        resolve_stem("perceptiq-tiny", {"front_end": {"rgb_pol": 4}})
    with pytest.raises(ValueError, match="unknown stem setting 'chanels'. Did you mean 'channels'"):
        resolve_stem("perceptiq-tiny", {"chanels": [16, 32, 64]})
    with pytest.raises(ValueError, match="test-tiny, which has no convolutional stem"):
        resolve_stem("test-tiny", {"front_end": {"rgb_pool": 4}})


def test_backbone_builds_and_reports_the_stem_it_was_asked_for():
    from perceptiq.backbones.stems import stem_settings

    backbone = create_backbone("perceptiq-tiny", "random", stem={"front_end": {"rgb_pool": 2, "chroma_pool": 2}})
    front = backbone.clip.visual.conv1.front_end
    assert (front.rgb_pool, front.chroma_pool, front.luma_scales) == (2, 2, 2)
    assert backbone.info.stem["front_end"]["rgb_pool"] == 2
    assert create_backbone("perceptiq-tiny", "random").info.stem == stem_settings()["perceptiq-tiny"]
    assert create_backbone("test-tiny", "random").info.stem is None
