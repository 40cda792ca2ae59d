"""Autocast policy: the fp32 patch embedding (precision) and, through it, torch's fused attention path."""
import torch
from torch.profiler import ProfilerActivity, profile

from perceptiq.backbones import create_backbone
from perceptiq.backbones.autocast_policy import (
    Float32PatchEmbedding,
    bf16_residual_stream,
    keep_patch_embedding_in_fp32,
)


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


def _expanded_weight_bmms(calls, width):
    """bmm calls whose second operand is the packed q/k/v weight expanded over the sequence: [L, W, 3W]."""
    return [s for n, s in calls if n == "aten::bmm" and len(s) > 1 and len(s[1]) == 3
            and s[1][1:] in ((width, 3 * width), (3 * width, width))]


def test_training_under_autocast_projects_qkv_in_one_gemm_with_the_same_gradients():
    """One attention layer of ViT-B/16's size (width 768, 205 tokens with GRMP's prompts, batch 4) as GRMP's
    prompt tuning runs it: frozen weights, an input that needs a gradient (the prompts are upstream). Then
    torch's matmul does not fold the transposed input into one GEMM; it expands the weight instead."""
    from perceptiq.backbones.autocast_policy import install_attention_layout_hooks

    torch.manual_seed(0)
    layers = {name: torch.nn.Sequential(torch.nn.MultiheadAttention(768, 12, batch_first=True))
              for name in ("hooked", "unhooked")}
    layers["unhooked"].load_state_dict(layers["hooked"].state_dict())
    assert install_attention_layout_hooks(layers["hooked"]) == 1
    assert install_attention_layout_hooks(layers["hooked"]) == 0        # idempotent
    tokens = torch.randn(4, 205, 768, generator=torch.Generator().manual_seed(1))
    grads, bmms = {}, {}
    for name, layer in layers.items():
        attention = layer[0]
        attention.requires_grad_(False)
        inputs = tokens.clone().requires_grad_(True)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out, _ = attention(inputs, inputs, inputs, need_weights=False)
            out.float().square().sum().backward()

        _, calls = _aten_calls(step)
        grads[name], bmms[name] = inputs.grad.clone(), _expanded_weight_bmms(calls, 768)
    assert bmms["unhooked"], "torch no longer expands the weight here: the hook may be unnecessary"
    assert bmms["hooked"] == []
    torch.testing.assert_close(grads["hooked"], grads["unhooked"], atol=0.5, rtol=2e-2)


def test_layout_hook_acts_exactly_when_the_fused_path_is_closed():
    from perceptiq.backbones.autocast_policy import _sequence_first_layout

    attention = torch.nn.MultiheadAttention(16, 2, batch_first=True).eval().requires_grad_(False)
    tokens = torch.randn(2, 5, 16)

    def acts():
        return _sequence_first_layout(attention, (tokens, tokens, tokens), {}) is not None

    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            assert not acts()                        # eval, no gradient: fused path, plain layout
            attention.train()
            assert acts()                            # training mode closes the fused path
            attention.eval()
        attention.requires_grad_(True)
        assert acts()                                # gradients in play
    assert not acts()                                # no autocast: never


def test_inside_torch_compile_the_fused_path_is_never_assumed(monkeypatch):
    from perceptiq.backbones.autocast_policy import _takes_fused_path

    attention = torch.nn.MultiheadAttention(16, 2, batch_first=True).eval().requires_grad_(False)
    tokens = torch.randn(2, 5, 16)
    with torch.no_grad():
        assert _takes_fused_path(attention, tokens)
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)   # as inside a dynamo trace
        assert not _takes_fused_path(attention, tokens)    # the traced graph runs the unfused path


def test_attention_that_torch_never_fuses_projects_qkv_in_one_gemm_also_at_inference():
    """perceptiq-tiny's ViT has 3 heads of 64: torch's fused path wants an even head count, so even in
    eval mode without gradients its attention runs the unfused path, where the transposed input made torch
    expand the packed q/k/v weight over the sequence (a [L, W, 3W] copy and a bmm per layer). The layout
    hook acts there; the outputs stay what bf16 makes of the same computation."""
    from perceptiq.backbones.autocast_policy import _sequence_first_layout, install_attention_layout_hooks

    torch.manual_seed(0)
    layers = {name: torch.nn.Sequential(torch.nn.MultiheadAttention(192, 3, batch_first=True)).eval()
              for name in ("hooked", "unhooked")}
    layers["unhooked"].load_state_dict(layers["hooked"].state_dict())
    install_attention_layout_hooks(layers["hooked"])
    tokens = torch.randn(8, 50, 192, generator=torch.Generator().manual_seed(2))
    outputs, bmms = {}, {}
    for name, layer in layers.items():
        attention = layer[0]

        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return attention(tokens, tokens, tokens, need_weights=False)[0].float()

        outputs[name], calls = _aten_calls(run)
        bmms[name] = _expanded_weight_bmms(calls, 192)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert _sequence_first_layout(layers["hooked"][0], (tokens, tokens, tokens), {}) is not None
    assert bmms["unhooked"], "torch now fuses odd head counts or folds the transpose: the hook may be unnecessary"
    assert bmms["hooked"] == []
    with torch.inference_mode():
        exact = layers["unhooked"].double()[0](*(tokens.double(),) * 3, need_weights=False)[0]
    errors = {name: float((out.double() - exact).norm()) for name, out in outputs.items()}
    assert errors["hooked"] <= 10 * errors["unhooked"], errors    # bf16 rounding of the same size


def test_bf16_inference_stream_starts_from_fp32_patch_embeddings_and_only_without_gradients():
    """Adjustment 3: inside ``bf16_residual_stream()`` under bf16 autocast with no gradient, the patch
    embeddings are the fp32 convolution rounded once to bf16; with a gradient, outside the context or
    without autocast they stay fp32."""
    backbone = create_backbone("test-tiny", "random")
    conv = backbone.clip.visual.conv1
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    reference = torch.nn.functional.conv2d(pixels, conv.weight, stride=conv.stride)
    with torch.autocast("cpu", dtype=torch.bfloat16), bf16_residual_stream():
        with torch.inference_mode():
            streamed = conv(pixels)
        with torch.enable_grad():
            trained = conv(pixels.requires_grad_())
    with torch.inference_mode(), bf16_residual_stream():
        no_autocast = conv(pixels)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        outside = conv(pixels)
    assert streamed.dtype == torch.bfloat16
    assert torch.equal(streamed, outside.to(torch.bfloat16))           # the fp32 result, rounded once
    torch.testing.assert_close(outside, reference, atol=1e-5, rtol=1e-5)
    assert trained.dtype == no_autocast.dtype == outside.dtype == torch.float32


def test_bf16_predict_runs_every_block_on_a_bf16_stream_and_training_on_fp32():
    import perceptiq

    model = perceptiq.load_model("zero-shot", backbone="test-tiny", weights="random", device="cpu",
                                 precision="bf16")
    blocks = model.image_tower.transformer.resblocks
    seen = []
    handles = [b.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype)) for b in blocks]
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    model.predict(pixels)
    assert seen == [torch.bfloat16] * len(blocks)
    seen.clear()
    model.module.train()
    with torch.autocast("cpu", dtype=torch.bfloat16), bf16_residual_stream():
        model.module(pixels)                              # a training forward: gradients recorded
    assert seen == [torch.float32] * len(blocks)
    for handle in handles:
        handle.remove()
