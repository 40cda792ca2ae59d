"""Autocast policy: the fp32 patch embedding (precision) and, through it, torch's fused attention path."""
import torch
from torch.profiler import ProfilerActivity, profile

from perceptiq.backbones import create_backbone
from perceptiq.backbones.autocast_policy import Float32PatchEmbedding, keep_patch_embedding_in_fp32


def _aten_calls(fn):
    """(aten op name, input shapes) of every op ``fn`` runs, as the profiler records them."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        result = fn()
    return result, [(event.name, [tuple(shape) for shape in event.input_shapes]) for event in prof.events()]


def test_patch_embedding_computes_in_fp32_under_autocast_with_unchanged_weights():
    backbone = create_backbone("test-tiny", "random")
    conv = backbone.clip.visual.conv1
    assert type(conv) is Float32PatchEmbedding and "visual.conv1.weight" in backbone.clip.state_dict()
    assert keep_patch_embedding_in_fp32(backbone.clip)                  # idempotent
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    reference = torch.nn.functional.conv2d(pixels, conv.weight, stride=conv.stride)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(pixels)
        rounded = torch.nn.functional.conv2d(pixels, conv.weight, stride=conv.stride)   # plain autocast
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    assert (rounded.float() - reference).abs().max() > 1e-3


def test_under_bf16_autocast_attention_takes_the_fused_path_and_linears_run_in_bf16():
    backbone = create_backbone("test-tiny", "random")
    pixels = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    width = backbone.clip.visual.transformer.width
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        features, calls = _aten_calls(lambda: backbone.encode_image(pixels).float())
    names = [name for name, _ in calls]
    assert names.count("aten::_native_multi_head_attention") >= len(backbone.visual_blocks)   # per block
    # never the slow fallback: the packed q/k/v weight expanded over the sequence for a bmm
    assert not [s for n, s in calls if n == "aten::bmm" and len(s) > 1 and s[1][1:] == (width, 3 * width)]
    with torch.inference_mode():
        fp32 = backbone.encode_image(pixels)
    assert 0 < (features - fp32).abs().max() < 2e-2                      # bf16 somewhere, close to fp32
