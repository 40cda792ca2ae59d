"""Parameter and MAC counts (Gamma Tables 5 and 10), router activation tables (Fig. 5b) and the
`perceptiq info` / `perceptiq experts` commands."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from perceptiq.backbones import create_backbone
from perceptiq.cli.gamma import experts_command, format_info, info_command, info_report
from perceptiq.models import build_model, list_models, save_checkpoint
from perceptiq.models.analysis import (
    ActivationRow,
    activation_table_csv,
    compute_report,
    count_macs,
    count_parameters,
    format_activation_table,
    mean_router_activation,
    paper_efficiency,
    save_activation_chart,
)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one torch thread (two threads spin against each other on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def vit_macs(tokens: int, width: int, layers: int, mlp_ratio: int = 4) -> int:
    """Hand count of a pre-LN transformer's matrix products per sequence: q/k/v and out projections,
    Q K^T and A V, and the two FFN layers, in every block."""
    per_block = (tokens * width * 3 * width + tokens * width * width      # projections
                 + 2 * tokens * tokens * width                            # Q K^T, A V
                 + 2 * tokens * width * mlp_ratio * width)                # FFN
    return layers * per_block


@pytest.fixture(scope="module")
def vit_b16_zero_shot():
    return build_model("zero-shot", backbone="ViT-B-16", weights="random").module


def test_vit_b16_image_tower_macs_equal_the_hand_count(vit_b16_zero_shot):
    report = compute_report(vit_b16_zero_shot)
    patches = (224 // 16) ** 2
    expected = (vit_macs(patches + 1, 768, 12)
                + patches * 768 * 3 * 16 * 16                             # patch embedding (conv)
                + 768 * 512)                                              # output projection
    assert expected == pytest.approx(17.56e9, rel=0.01)
    assert report.image_tower.total == pytest.approx(expected, rel=0.02)
    # the attention products are in the count (without them it would be 0.72 G short)
    assert report.image_tower.total - expected < 12 * 2 * 197 ** 2 * 768 / 10
    text_expected = vit_macs(77, 512, 12) + 512 * 512
    assert report.text_per_prompt.total == pytest.approx(text_expected, rel=0.02)
    # a counter blind to nn.MultiheadAttention would miss projections and products: 17.56 - 6.29 G
    attention_module = 12 * (4 * 197 * 768 * 768 + 2 * 197 ** 2 * 768)
    assert report.image_tower.without_attention_modules() == report.image_tower.total - attention_module
    # zero-shot keeps its text features as buffers: a forward costs the image tower plus a tiny head
    assert report.image_tower.total <= report.forward.total < report.image_tower.total * 1.001


def test_fused_inference_attention_is_counted_like_the_autograd_path():
    backbone = create_backbone("test-tiny", "random")
    backbone.eval()
    pixels = torch.randn(2, 3, 224, 224)
    fused = count_macs(lambda: backbone.encode_image(pixels))           # no_grad + eval: fused MHA kernel
    assert any("native_multi_head_attention" in op for op in fused.by_operator)
    counter = torch.utils.flop_counter.FlopCounterMode(display=False)
    with counter:                                                        # grad enabled: decomposed kernels
        backbone.encode_image(pixels.requires_grad_())
    decomposed = counter.get_total_flops() // 2
    attention = 4 * 2 * 50 ** 2 * 64 * 2     # 4 blocks, Q K^T + A V, 50 tokens, width 64, batch 2
    # PyTorch's own count of the decomposed path misses the CPU attention kernel; ours has it
    assert fused.total == decomposed + attention


def test_gamma_moae_adds_exactly_the_adaptive_experts_routers_and_adapter():
    plain = compute_report(build_model("zero-shot", backbone="test-tiny", weights="random").module)
    gamma_model = build_model("gamma", backbone="test-tiny", weights="random", n_layers=2, n_experts=3).module
    gamma = compute_report(gamma_model)
    tokens, width, hidden, experts, layers = 50, 64, 256, 3, 2
    per_layer = (experts * tokens * width * hidden             # first expert layer, every expert on every token
                 + tokens * experts * hidden * width           # second layer (sum over experts and hidden)
                 + tokens * experts * width                    # gate-weighted expert output biases
                 + tokens * width * experts)                   # router W x
    adapter = width * 256 + 256 * width
    assert gamma.image_tower.total - plain.image_tower.total == layers * per_layer + adapter
    # text features are cached at inference: the forward does not pay the text tower
    assert gamma.forward.total < gamma.image_tower.total + gamma.text_per_prompt.total / 10
    text_layer = per_layer // tokens * 77
    assert gamma.text_per_prompt.total - plain.text_per_prompt.total == layers * text_layer


def test_parameter_counts_split_trainable_moae_and_head():
    model = build_model("gamma", backbone="test-tiny", weights="random", n_layers=2).module
    count = count_parameters(model)
    assert count.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert count.total == sum(p.numel() for p in model.parameters())
    assert count.groups["moae_trainable"] + count.groups["head_trainable"] == count.trainable
    zero = count_parameters(build_model("zero-shot", backbone="test-tiny", weights="random").module)
    assert zero.trainable == 0 and zero.groups == {}


def test_paper_figures_are_tables_5_and_10():
    gamma = paper_efficiency()["gamma"]
    assert (gamma["trainable_params_m"], gamma["compute_g"]) == (122.8, 28.45)
    assert gamma["total_params_m_by_layers"] == {0: 149.9, 4: 231.8, 6: 272.7, 8: 313.6, 12: 395.5}


# -- router activation --------------------------------------------------------------------------------------
@pytest.fixture
def routed_gamma():
    model = build_model("gamma", backbone="test-tiny", weights="random", n_layers=2).module
    with torch.no_grad():   # a router with some spread, so averages are not trivially uniform
        for module in model.visual_experts:
            module.router.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
    return model


def test_mean_router_activation_weights_every_image_equally(routed_gamma):
    pixels = torch.randn(5, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    per_image = routed_gamma.mean_router_activation(pixels)          # [5, 3], token-averaged
    together, n = mean_router_activation(routed_gamma, [pixels])
    in_pieces, m = mean_router_activation(routed_gamma, [pixels[:4], pixels[4:]])
    assert (n, m) == (5, 5)
    np.testing.assert_allclose(together, per_image.mean(0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(in_pieces, together, rtol=1e-5)
    assert together.sum() == pytest.approx(1.0, abs=1e-5) and together.std() > 1e-3
    with pytest.raises(ValueError, match="no images"):
        mean_router_activation(routed_gamma, [])
    with pytest.raises(ValueError, match="no MoAE router"):
        mean_router_activation(build_model("zero-shot", backbone="test-tiny", weights="random").module, [pixels])


def test_activation_table_formats_and_chart(tmp_path):
    rows = [ActivationRow("live", 10, np.array([0.5, 0.3, 0.2])), ActivationRow("uwiqa", 4, np.array([0.1, 0.1, 0.8]))]
    table = format_activation_table(rows)
    assert table.splitlines()[0] == "| dataset | images | expert 1 | expert 2 | expert 3 |"
    assert "| uwiqa | 4 | 0.1000 | 0.1000 | 0.8000 |" in table
    parsed = list(csv.DictReader(activation_table_csv(rows).splitlines()))
    assert parsed[0]["dataset"] == "live" and float(parsed[0]["expert_2"]) == 0.3
    path = save_activation_chart(rows, tmp_path / "chart.png")
    assert Image.open(path).size[0] > 100


# -- commands -------------------------------------------------------------------------------------------------
def command_app() -> typer.Typer:
    app = typer.Typer()
    app.command("experts")(experts_command)
    app.command("info")(info_command)
    return app


def write_csv_dataset(folder, n, shade_step):
    folder.mkdir(parents=True)
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "score"])
        for i in range(n):
            Image.new("RGB", (40, 30), ((shade_step * i) % 256, 90, 200)).save(folder / f"{i}.png")
            writer.writerow([f"{i}.png", i / n])
    return folder / "labels.csv"


def test_experts_command_writes_the_table_and_the_chart(tmp_path, routed_gamma):
    checkpoint = tmp_path / "ckpt" / "model.safetensors"
    save_checkpoint(checkpoint, routed_gamma.trainable_state_dict() | {
        name: p.detach() for name, p in routed_gamma.named_parameters() if name.endswith("router.weight")}, {
        "model": "gamma", "factory": "gamma", "backbone": "test-tiny", "weights": "random", "task": "quality",
        "scene": None, "options": {"n_layers": 2}, "trained_parameters": []})
    natural = write_csv_dataset(tmp_path / "natural", 6, 40)
    underwater = write_csv_dataset(tmp_path / "under", 3, 80)
    out = tmp_path / "out"
    result = CliRunner().invoke(command_app(), [
        "experts", "--model", str(checkpoint), "--data", f"csv={natural}", "--data", f"uwiqa={underwater}",
        "--images-per-dataset", "4", "--output", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "| csv | 4 |" in result.output and "| uwiqa | 3 |" in result.output
    rows = list(csv.DictReader((out / "router_activation.csv").read_text().splitlines()))
    assert [r["dataset"] for r in rows] == ["csv", "uwiqa"]
    assert sum(float(rows[1][f"expert_{i}"]) for i in (1, 2, 3)) == pytest.approx(1.0, abs=1e-4)
    assert (out / "router_activation.png").is_file() and (out / "router_activation.md").is_file()
    bad = CliRunner().invoke(command_app(), ["experts", "--model", "zero-shot", "--data", f"csv={natural}"])
    assert bad.exit_code == 2


def test_info_command_prints_counts_next_to_the_paper():
    tiny = ["--model", "gamma", "--backbone", "test-tiny", "--weights", "random", "--option", "n_layers=4"]
    result = CliRunner().invoke(command_app(), ["info", *tiny, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    model = build_model("gamma", backbone="test-tiny", weights="random", n_layers=4).module
    assert report["parameters"]["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert report["macs"]["image_tower"] == compute_report(model).image_tower.total
    # Table 5 has a 4-layer row; Table 10's figures are for 6 layers only, so they are not shown here
    assert report["paper"]["total_params_m"] == 231.8 and "trainable_params_m" not in report["paper"]
    text = CliRunner().invoke(command_app(), ["info", *tiny])
    assert "paper (Gamma Table 10" in text.output and "total 231.8M" in text.output
    assert "image tower" in text.output and "text tower, per prompt" in text.output
    unknown = CliRunner().invoke(command_app(), ["info", "--model", "no-such-model"])
    assert unknown.exit_code == 2 and "unknown model" in unknown.output
    bad_option = CliRunner().invoke(command_app(), ["info", *tiny[:6], "--option", "n_layers"])
    assert bad_option.exit_code == 2 and "KEY=VALUE" in bad_option.output


def test_info_text_puts_table_10_beside_our_counts():
    report = {"model": "gamma", "backbone": "ViT-B-16", "weights": "random", "task": "quality", "scene": None,
              "options": {"n_layers": 6}, "parameters": {"trainable": 123_084_561, "total": 272_705_298,
                                                         "moae_trainable": 122_821_644, "head_trainable": 262_917},
              "macs": {"image_size": 224, "image_tower": 34_300_000_000, "forward_per_image": 34_300_100_000,
                       "image_tower_without_attention_modules": 28_010_000_000,
                       "text_tower_per_prompt": 5_810_000_000},
              "paper": {"source": "Gamma Table 10", "trainable_params_m": 122.8, "compute_g": 28.45,
                        "total_params_m": 272.7}}
    text = format_info(report)
    assert "trainable 122.8M (ours 123.08M, of which MoAE 122.82M)" in text
    assert "compute 28.45G (ours: image tower 34.30 GMACs, 28.01 without nn.MultiheadAttention)" in text and "total 272.7M (ours 272.71M)" in text


@pytest.mark.parametrize("name", [spec.name for spec in list_models()])
def test_info_works_for_every_registered_model(name):
    from perceptiq.models import get_model_spec

    options = {"n_layers": 2} if name == "gamma" else {}   # test-tiny has 4 blocks, Gamma's default is 6
    # the built-in model ships its own small backbone and weights; every other model runs on test-tiny
    shipped = get_model_spec(name).default_weights == "shipped"
    backbone, weights = (None, None) if shipped else ("test-tiny", "random")
    report = info_report(name, backbone=backbone, weights=weights, options=options)
    assert report["parameters"]["total"] > 0
    assert report["macs"]["image_tower"] > 0 and report["macs"]["text_tower_per_prompt"] > 0
    assert report["macs"]["forward_per_image"] >= report["macs"]["image_tower"] * 0.99
