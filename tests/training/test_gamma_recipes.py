"""Gamma recipes: every one loads, plans its units on tiny datasets, and trains one step on test-tiny;
split seeds of a transfer run match the mixed run's; Table 6's forced-expert rows are right."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from perceptiq.data import get_dataset_spec
from perceptiq.data.generic_csv import load_csv_with_spec
from perceptiq.evaluation.protocols import score_split
from perceptiq.models import build_model, load_checkpoint
from perceptiq.recipes import apply_override, list_recipes, load_recipe, resolve_variant
from perceptiq.training import TrainConfig, Trainer
from perceptiq.training.experiment import (
    datasets_needed,
    forced_expert_rows,
    init_checkpoint_path,
    plan_runs,
    run_experiment,
    to_items,
)

OTHER_OWNERS = {"gamma-qgr-fewshot"}
GAMMA_RECIPES = [n for n in list_recipes() if n.startswith("gamma-") and n not in OTHER_OWNERS]
TINY_MODEL = ["model.backbone=test-tiny", "model.weights=random", "model.options.n_layers=2"]
ONE_STEP = ["train.epochs=1", "train.max_steps_per_epoch=1", "train.workers=0", "train.eval_batch_size=8"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one torch thread (two threads spin against each other on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_dataset_csv(folder: Path, name: str, n: int = 20):
    """``n`` tiny images labelled inside dataset ``name``'s own scale, read under its registry spec
    (task, scene, DMOS flip); synthetic datasets get a reference per image (as their parsers give) so
    by-reference splits work, authentic ones none."""
    spec = get_dataset_spec(name)
    scale = spec.column(None).scale
    low, high = (0.0, 1.0) if scale.uses_file_range else (scale.low, scale.high)
    folder.mkdir(parents=True)
    rows = []
    for i in range(n):
        shade = int(255 * i / max(n - 1, 1))
        path = folder / f"img{i:02d}.png"
        from PIL import Image

        Image.new("RGB", (8, 8), (shade, 255 - shade, (37 * i) % 256)).save(path)
        label = low + (high - low) * (i + 0.5) / n
        rows.append([path.name, f"{label:.5f}", f"ref{i % 5}"][:3 if spec.synthetic else 2])
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "score", "ref"][:3 if spec.synthetic else 2])
        writer.writerows(rows)
    return load_csv_with_spec(folder / "labels.csv", spec)


def recipe_datasets(recipe: dict) -> list[str]:
    names = datasets_needed(recipe)
    for variant in (recipe.get("variants") or {}):
        for name in datasets_needed(resolve_variant(recipe, variant)):
            if name not in names:
                names.append(name)
    return names


@pytest.fixture(scope="module")
def tiny_datasets(tmp_path_factory):
    """Every dataset any Gamma recipe names, 10 images each, as generic CSV under the dataset's spec."""
    root = tmp_path_factory.mktemp("datasets")
    names = sorted({n for r in GAMMA_RECIPES for n in recipe_datasets(load_recipe(r))})
    return {name: write_dataset_csv(root / name, name) for name in names}


def test_the_recipes_of_every_gamma_setup_are_shipped():
    assert set(GAMMA_RECIPES) >= {"gamma-mixed", "gamma-mixed-sdp", "gamma-task", "gamma-liqe6",
                                  "gamma-liqe6-zeroshot", "gamma-qalign3", "gamma-transfer"}


def test_paper_settings_are_those_of_section_4_2_and_table_8():
    mixed = load_recipe("gamma-mixed")
    assert mixed["protocol"]["datasets"] == ["live", "csiq", "tid2013", "kadid10k", "livec", "koniq10k", "spaq",
                                             "gfiqa20k", "agiqa3k", "uwiqa", "ava", "aadb"]
    config = TrainConfig.from_dict(mixed["train"])
    assert (config.optimizer, config.lr, config.epochs, config.batch_size, config.loss) == ("adam", 2e-5, 10, 8, "mse")
    assert mixed["protocol"]["split"] == {"mode": "random", "train_fraction": 0.8, "n_splits": 10, "base_seed": 0}
    assert mixed["model"]["options"]["prompt_style"] == "naive"
    assert load_recipe("gamma-mixed-sdp")["model"]["options"]["prompt_style"] == "sdp"
    task = load_recipe("gamma-task")["per_dataset"]
    table8 = {"live": (50, 8), "csiq": (50, 8), "tid2013": (20, 8), "kadid10k": (20, 8), "livec": (50, 8),
              "koniq10k": (20, 8), "spaq": (20, 8), "gfiqa20k": (10, 8), "agiqa3k": (20, 8), "uwiqa": (50, 8),
              "ava": (20, 128), "aadb": (20, 8), "exbedde": (20, 8), "eciqad": (20, 8)}
    assert {k: (v["epochs"], v["batch_size"]) for k, v in task.items()} == table8
    # a per-dataset setting reaches the TrainConfig of that dataset's units
    recipe = load_recipe("gamma-task")
    assert TrainConfig.from_dict({**recipe["train"], **recipe["per_dataset"]["ava"]}).batch_size == 128
    assert load_recipe("gamma-liqe6")["protocol"]["datasets"] == ["live", "csiq", "kadid10k", "bid", "livec", "koniq10k"]
    assert load_recipe("gamma-qalign3")["protocol"]["datasets"] == ["koniq10k", "spaq", "kadid10k"]
    zero = load_recipe("gamma-liqe6-zeroshot")
    assert (zero["protocol"]["kind"], zero["protocol"]["datasets"]) == ("zero-shot", ["tid2013", "spaq", "aigciqa2023"])


def test_learning_rate_starts_at_2e_5_and_decays_by_cosine_to_zero_over_the_run_per_epoch():
    """Section 4.2 / A.2: "initial learning rate 2e-5"; the authors' code decays it with a per-epoch
    CosineAnnealingLR(T_max = the run's epochs, eta_min = 0). Expected values written out by hand:
    lr_e = 1e-5 * (1 + cos(pi * e / E))."""
    ten_epochs = [2.0e-5, 1.9510565e-5, 1.8090170e-5, 1.5877853e-5, 1.3090170e-5, 1.0e-5,
                  6.9098301e-6, 4.1221475e-6, 1.9098301e-6, 4.8943484e-7]
    for name in ("gamma-mixed", "gamma-mixed-sdp", "gamma-liqe6", "gamma-qalign3"):
        config = TrainConfig.from_dict(load_recipe(name)["train"])
        assert config.epochs == 10, name
        assert [config.lr_at(e) for e in range(10)] == pytest.approx(ten_epochs, rel=1e-7), name
    task = load_recipe("gamma-task")
    live = TrainConfig.from_dict({**task["train"], **task["per_dataset"]["live"]})       # Table 8: 50 epochs
    assert [live.lr_at(e) for e in (0, 25, 49)] == pytest.approx([2.0e-5, 1.0e-5, 1.9732716e-8], rel=1e-7)
    transfer = load_recipe("gamma-transfer")
    exbedde = TrainConfig.from_dict({**transfer["train"], **transfer["per_dataset"]["exbedde"]})  # 20 epochs
    assert [exbedde.lr_at(e) for e in (0, 10, 19)] == pytest.approx([2.0e-5, 1.0e-5, 1.2311659e-7], rel=1e-7)


def test_ablation_variants_set_the_rows_of_tables_3_to_6_and_15():
    mixed = load_recipe("gamma-mixed")
    options = lambda v: resolve_variant(mixed, v)["model"]["options"]  # noqa: E731
    assert [options(f"experts-{n}")["n_experts"] for n in (0, 1, 3, 5)] == [0, 1, 3, 5]
    assert [options(f"layers-{k}")["n_layers"] for k in (0, 4, 6, 8, 12)] == [0, 4, 6, 8, 12]
    assert options("unfreeze-shared")["freeze_shared"] is False and options("no-sigma")["use_sigma"] is False
    assert resolve_variant(mixed, "single-experts")["model"]["force_expert"] == [0, 1, 2]
    assert resolve_variant(mixed, "balanced")["train"]["balanced"] is True
    sdp = load_recipe("gamma-mixed-sdp")
    for variant, style in (("general-prompt", "general"), ("quality-prompt", "quality"), ("sdp-prompt", "sdp")):
        model = resolve_variant(sdp, variant)["model"]
        assert model["options"]["prompt_style"] == style
        # the variant builds: a scene with a non-SDP style would be rejected by the model
        build_model("gamma", backbone="test-tiny", weights="random", scene=model["scene"],
                    **{**model["options"], "n_layers": 1})


TWELVE = ["live", "csiq", "tid2013", "kadid10k", "livec", "koniq10k", "spaq", "gfiqa20k", "agiqa3k", "uwiqa",
          "ava", "aadb"]                                          # section 4.2 / Table 1, in this order
BY_REFERENCE = {"live", "csiq", "kadid10k"}                      # Table 12's LIQE protocol: synthetic by content
# recipe -> (protocol, datasets, split mode per dataset ("random" unless named), n splits); written from the paper
PAPER_PLANS = {
    "gamma-mixed": ("mixed", TWELVE, {}, 10),                   # Table 1 "Gamma": random 80/20 x 10
    "gamma-mixed-sdp": ("mixed", TWELVE, {}, 10),               # Table 1 "Gamma-dagger"
    "gamma-task": ("separate", TWELVE, {}, 10),                 # Table 1 "Gamma-T" / Table 8
    "gamma-liqe6": ("mixed", ["live", "csiq", "kadid10k", "bid", "livec", "koniq10k"],
                    {n: "by_reference" for n in BY_REFERENCE}, 10),       # Table 12
    "gamma-qalign3": ("mixed", ["koniq10k", "spaq", "kadid10k"], {}, 10),  # Table 14
    "gamma-transfer": ("separate", ["exbedde", "eciqad"], {}, 10),         # Table 7
    "gamma-liqe6-zeroshot": ("zero-shot", ["tid2013", "spaq", "aigciqa2023"], {}, 1),   # Table 13
}


def test_every_gamma_recipe_has_its_plan_written_out():
    assert set(PAPER_PLANS) == set(GAMMA_RECIPES)


@pytest.mark.parametrize("name", sorted(PAPER_PLANS))
def test_recipe_plans_the_papers_datasets_and_splits(name, tiny_datasets):
    kind, names, modes, n_splits = PAPER_PLANS[name]
    recipe = load_recipe(name)
    assert (recipe["protocol"]["kind"], datasets_needed(recipe)) == (kind, names)
    datasets = {n: tiny_datasets[n] for n in names}
    units = plan_runs(recipe, datasets)
    if kind == "mixed":       # one model per split seed, trained on every dataset's training part
        assert [u.label for u in units] == [f"split{i:02d}" for i in range(n_splits)]
        expected = [(u, n, i) for i, u in enumerate(units) for n in names]
        assert all(list(u.train) == list(u.test) == names for u in units)
    elif kind == "separate":  # one model per dataset and split seed
        assert [u.label for u in units] == [f"{n}-seed{i}" for n in names for i in range(n_splits)]
        expected = [(u, next(iter(u.train)), int(u.label.rsplit("seed", 1)[1])) for u in units]
        per_dataset = recipe.get("per_dataset") or {}
        assert all(list(u.train) == list(u.test) == [n] and u.train_overrides == per_dataset.get(n, {})
                   for u, n, _ in expected)
    else:                     # zero-shot: nothing trained, every image of every dataset tested
        (unit,) = units
        assert not unit.train and list(unit.test) == names
        assert all(split.mode == "whole_test" and len(test) == 20 for split, test in unit.test.values())
        return
    for unit, dataset, seed in expected:
        split, test = unit.test[dataset]
        mode = modes.get(dataset, "random")
        assert (split.dataset, split.mode, split.seed, split.params["train_fraction"]) == (dataset, mode, seed, 0.8)
        train = unit.train[dataset]
        assert len(train) + len(test) == 20 and not {str(s.path) for s in train} & {str(s.path) for s in test}
        if mode == "by_reference":
            assert not {s.ref for s in train} & {s.ref for s in test}


def _run_one_step(recipe: dict, datasets: dict, out: Path):
    needed = {n: datasets[n] for n in datasets_needed(recipe)}
    return run_experiment(recipe, {}, out, max_runs=1, datasets=needed)


@pytest.mark.parametrize("name", [n for n in GAMMA_RECIPES if load_recipe(n)["protocol"]["kind"] != "zero-shot"])
def test_one_unit_of_each_training_recipe_runs_one_step(name, tiny_datasets, tmp_path):
    recipe = load_recipe(name, TINY_MODEL + ONE_STEP)
    result = _run_one_step(recipe, tiny_datasets, tmp_path)
    run_dir = result.run_dirs[0]
    tensors, config = load_checkpoint(run_dir / "model.safetensors")
    assert config["factory"] == "gamma" and config["options"]["n_layers"] == 2
    assert any(".fc_weight" in key for key in tensors) and "level_values" in tensors
    tested = {row.dataset for row in result.result.rows}
    first_unit = plan_runs(recipe, {n: tiny_datasets[n] for n in datasets_needed(recipe)})[0]
    assert tested == set(first_unit.test)
    assert (tmp_path / "results.md").is_file() and (tmp_path / "splits.json").is_file()


def test_zero_shot_recipe_scores_a_trained_liqe6_checkpoint(tiny_datasets, tmp_path):
    trained = _run_one_step(load_recipe("gamma-liqe6", TINY_MODEL + ONE_STEP), tiny_datasets, tmp_path / "liqe6")
    checkpoint = trained.run_dirs[0] / "model.safetensors"
    zero = load_recipe("gamma-liqe6-zeroshot", TINY_MODEL + ONE_STEP + [f"model.init={checkpoint}"])
    result = _run_one_step(zero, tiny_datasets, tmp_path / "zero")
    assert {row.dataset for row in result.result.rows} == {"tid2013", "spaq", "aigciqa2023"}
    assert all(row.n_train == 0 and row.n_test == 20 for row in result.result.rows)
    # the variant for Gamma-double-dagger keeps only the unseen dataset
    assert resolve_variant(zero, "mixed12")["protocol"]["datasets"] == ["aigciqa2023"]


def test_model_init_that_does_not_fit_the_recipe_model_is_an_error(tiny_datasets, tmp_path):
    trained = _run_one_step(load_recipe("gamma-liqe6", TINY_MODEL + ONE_STEP), tiny_datasets, tmp_path / "liqe6")
    wrong = load_recipe("gamma-liqe6-zeroshot", TINY_MODEL + ONE_STEP + [
        f"model.init={trained.run_dirs[0] / 'model.safetensors'}", "model.options.n_layers=1"])
    with pytest.raises(ValueError, match="model.init"):
        _run_one_step(wrong, tiny_datasets, tmp_path / "zero")


# -- transfer: split k never trains on the mixed run's split-k test images --------------------------------
def _transfer_on(dataset: str, overrides=()):
    """gamma-transfer's from-mixed variant on ``dataset``, with ``overrides`` applied after the variant."""
    recipe = resolve_variant(load_recipe("gamma-transfer", [f"protocol.datasets=[{dataset}]"]), "from-mixed")
    for override in overrides:
        apply_override(recipe, override)
    return recipe


def test_transfer_split_k_never_trains_on_a_test_image_of_mixed_split_k(tmp_path):
    koniq = write_dataset_csv(tmp_path / "koniq10k", "koniq10k", n=40)
    spaq = write_dataset_csv(tmp_path / "spaq", "spaq", n=40)
    mixed = load_recipe("gamma-mixed", ["protocol.datasets=[koniq10k,spaq]"])
    transfer = _transfer_on("koniq10k")
    mixed_units = plan_runs(mixed, {"koniq10k": koniq, "spaq": spaq})
    transfer_units = plan_runs(transfer, {"koniq10k": koniq})
    assert len(mixed_units) == len(transfer_units) == 10
    for k, (m, t) in enumerate(zip(mixed_units, transfer_units)):
        mixed_test = {str(s.path) for s in m.test["koniq10k"][1]}
        transfer_train = {str(s.path) for s in t.train["koniq10k"]}
        assert mixed_test and transfer_train
        assert not mixed_test & transfer_train, f"split {k}"
        assert mixed_test == {str(s.path) for s in t.test["koniq10k"][1]}
        # and split k starts from the mixed run's split-k checkpoint
        assert init_checkpoint_path(transfer, t) == f"runs/gamma-mixed/{m.label}/model.safetensors"
    # control: with another base seed the same check fails, so the test above can fail
    shifted = plan_runs(_transfer_on("koniq10k", ["protocol.split.base_seed=100"]), {"koniq10k": koniq})
    overlaps = [{str(s.path) for s in m.test["koniq10k"][1]} & {str(s.path) for s in t.train["koniq10k"]}
                for m, t in zip(mixed_units, shifted)]
    assert any(overlaps)


def test_transfer_from_mixed_loads_the_checkpoint_of_its_own_split(tmp_path):
    koniq = write_dataset_csv(tmp_path / "koniq10k", "koniq10k", n=20)
    tiny_split = ["protocol.split.n_splits=2"]
    mixed = load_recipe("gamma-mixed", TINY_MODEL + ONE_STEP + tiny_split + ["protocol.datasets=[koniq10k]"])
    run_experiment(mixed, {}, tmp_path / "mixed", datasets={"koniq10k": koniq})
    template = str(tmp_path / "mixed" / "split{index:02d}" / "model.safetensors")
    transfer = _transfer_on("koniq10k", TINY_MODEL + ONE_STEP + tiny_split + [f"model.init={template}"])
    units = plan_runs(transfer, {"koniq10k": koniq})
    assert [init_checkpoint_path(transfer, u) for u in units] == [
        str(tmp_path / "mixed" / f"split{k:02d}" / "model.safetensors") for k in range(2)]
    result = run_experiment(transfer, {}, tmp_path / "transfer", datasets={"koniq10k": koniq})
    assert len(result.run_dirs) == 2


# -- Table 6: scores with one expert forced ----------------------------------------------------------------
def test_forced_expert_rows_score_each_expert_alone_and_restore_the_mixture(tmp_path):
    koniq = write_dataset_csv(tmp_path / "koniq10k", "koniq10k", n=20)
    recipe = resolve_variant(load_recipe("gamma-mixed", TINY_MODEL + ONE_STEP + [
        "protocol.datasets=[koniq10k]", "protocol.split.n_splits=1"]), "single-experts")
    unit = plan_runs(recipe, {"koniq10k": koniq})[0]
    model = build_model("gamma", backbone="test-tiny", weights="random", n_layers=2).module
    with torch.no_grad():  # make the experts differ and matter (sigma 0 would hide them)
        generator = torch.Generator().manual_seed(0)
        for module in model.visual_experts + model.text_experts:
            module.sigma.fill_(1.0)
            module.fc_weight.add_(0.5 * torch.randn(module.fc_weight.shape, generator=generator))
    trainer = Trainer(TrainConfig(eval_batch_size=4))
    items = {"koniq10k": to_items(unit.test["koniq10k"][1], koniq, model)}
    rows = forced_expert_rows(recipe, model, trainer, unit, items, n_train=16)
    assert [row.params["force_expert"] for row in rows] == [0, 1, 2]
    _, eval_tf = trainer.transforms(model)
    split, samples = unit.test["koniq10k"]
    for index, row in enumerate(rows):
        model.set_forced_expert(index)
        expected = score_split(split, samples, trainer.predict(model, items["koniq10k"], eval_tf), n_train=16)
        model.set_forced_expert(None)
        assert row.metrics == expected.metrics
    assert all(m.force_expert is None for m in model.visual_experts + model.text_experts)
    full = trainer.predict(model, items["koniq10k"], eval_tf)
    model.set_forced_expert(0)
    assert not np.allclose(full, trainer.predict(model, items["koniq10k"], eval_tf))


def test_force_expert_on_a_model_without_experts_is_an_error(tmp_path):
    koniq = write_dataset_csv(tmp_path / "koniq10k", "koniq10k", n=20)
    recipe = load_recipe("gamma-mixed", ["protocol.datasets=[koniq10k]", "protocol.split.n_splits=1",
                                         "model.name=zero-shot", "model.force_expert=0"])
    unit = plan_runs(recipe, {"koniq10k": koniq})[0]
    model = build_model("zero-shot", backbone="test-tiny", weights="random").module
    with pytest.raises(ValueError, match="no adaptive experts"):
        forced_expert_rows(recipe, model, Trainer(TrainConfig()), unit, {"koniq10k": []}, n_train=0)


def test_model_init_template_with_an_unknown_field_is_an_error():
    recipe = load_recipe("gamma-transfer", ["model.init=runs/x/{split}/model.safetensors"])
    with pytest.raises(ValueError, match=r"only \{seed\} and \{index\}"):
        init_checkpoint_path(recipe)


# -- Table 7 "Ours": gamma-transfer:from-uniqa starts from UniQA or does not start ----------------------------
def test_transfer_from_uniqa_without_uniqa_weights_fails_before_reading_data_and_names_them(tmp_path):
    from typer.testing import CliRunner

    from perceptiq.cli.main import app

    recipe = resolve_variant(load_recipe("gamma-transfer"), "from-uniqa")
    assert recipe["model"]["weights"] == "openai"          # the shipped default is not UniQA ...
    with pytest.raises(ValueError) as error:               # ... so the variant refuses to run
        run_experiment(recipe, {}, tmp_path / "run")       # no data given: the weights are checked first
    message = str(error.value)
    assert "gamma-transfer:from-uniqa starts from UniQA's CLIP-B/16 weights (missing: UniQA_weight.pt)" in message
    assert "model.weights is 'openai'" in message and "--set model.weights=uniqa:/path/to/UniQA_weight.pt" in message
    assert not (tmp_path / "run").exists()
    absent = tmp_path / "nowhere" / "UniQA_weight.pt"
    recipe["model"]["weights"] = f"uniqa:{absent}"
    with pytest.raises(FileNotFoundError, match=f"names {absent}, which does not exist"):
        run_experiment(recipe, {}, tmp_path / "run")
    # the command line says the same and makes no run folder
    result = CliRunner().invoke(app, ["train", "--recipe", "gamma-transfer", "--variant", "from-uniqa",
                                      "--data", f"exbedde={tmp_path / 'labels.csv'}", "--output", str(tmp_path / "cli")])
    assert result.exit_code != 0
    assert "UniQA_weight.pt" in result.output and "model.weights=uniqa:" in result.output
    assert not (tmp_path / "cli").exists()


def test_transfer_from_uniqa_trains_from_the_uniqa_file(tiny_datasets, tmp_path):
    from perceptiq.backbones import create_backbone
    from perceptiq.training.experiment import build_run_model

    source = create_backbone("test-tiny", "random", seed=123)   # stands in for UniQA: not the default seed
    path = tmp_path / "UniQA_weight.pt"
    torch.save({"model": {f"clip_model.{k[len('clip.'):]}": v for k, v in source.state_dict().items()}}, path)
    recipe = resolve_variant(load_recipe("gamma-transfer", TINY_MODEL + ONE_STEP), "from-uniqa")
    recipe["model"]["weights"] = f"uniqa:{path}"
    module = build_run_model(recipe, "cpu").module
    start = module.backbone.clip.visual.conv1.weight
    torch.testing.assert_close(start, source.clip.visual.conv1.weight)
    assert not torch.equal(start, create_backbone("test-tiny", "random").clip.visual.conv1.weight)
    result = _run_one_step(recipe, tiny_datasets, tmp_path / "run")
    assert (result.run_dirs[0] / "model.safetensors").is_file()


# -- Table 15: prompts swapped at test time on the SDP-trained model ---------------------------------------
def test_table_15_variant_trains_with_sdp_once_and_scores_with_each_prompt(tiny_datasets, tmp_path):
    recipe = resolve_variant(load_recipe("gamma-mixed-sdp", TINY_MODEL + ONE_STEP + [
        "protocol.datasets=[koniq10k,ava]", "protocol.split.n_splits=1"]), "prompt-sensitivity")
    assert recipe["model"]["options"]["prompt_style"] == "sdp" and recipe["model"]["scene"] == "auto"
    result = _run_one_step(recipe, tiny_datasets, tmp_path)
    rows = {(row.dataset, row.params.get("test_prompt", "")): row for row in result.result.rows}
    assert sorted(rows) == sorted((d, p) for d in ("koniq10k", "ava") for p in ("", "general", "quality", "sdp"))
    for dataset in ("koniq10k", "ava"):   # SDP swapped in is what the model was trained and tested with
        assert rows[(dataset, "sdp")].metrics == rows[(dataset, "")].metrics
        assert rows[(dataset, "general")].n_test == rows[(dataset, "")].n_test


def test_swapped_prompts_give_each_dataset_the_styles_key_for_its_task_and_scene(tiny_datasets):
    from perceptiq.training.experiment import swapped_prompt_rows
    from perceptiq.training import TrainItem

    names = ["koniq10k", "ava", "uwiqa"]
    recipe = load_recipe("gamma-mixed-sdp", TINY_MODEL + ["protocol.split.n_splits=1", "model.test_prompts=[general,quality,sdp]",
                                                          f"protocol.datasets=[{','.join(names)}]"])
    unit = plan_runs(recipe, {n: tiny_datasets[n] for n in names})[0]
    model = build_model("gamma", backbone="test-tiny", weights="random", scene="auto", prompt_style="sdp",
                        n_layers=2).module
    trainer = Trainer(TrainConfig(eval_batch_size=8))
    rows = swapped_prompt_rows(recipe, model, trainer, unit, tiny_datasets, n_train=0)
    # the keys, written out: general/quality ignore the scene; general and sdp follow the task (AVA: aesthetics)
    keys = {"general": {"koniq10k": "general:quality", "ava": "general:aesthetics", "uwiqa": "general:quality"},
            "quality": {"koniq10k": "quality", "ava": "quality", "uwiqa": "quality"},
            "sdp": {"koniq10k": "sdp:natural:quality", "ava": "sdp:natural:aesthetics",
                    "uwiqa": "sdp:underwater:quality"}}
    assert [(r.params["test_prompt"], r.dataset) for r in rows] == [(s, n) for s in keys for n in names]
    _, eval_tf = trainer.transforms(model)
    scores = {}
    for row in rows:
        style, name = row.params["test_prompt"], row.dataset
        split, samples = unit.test[name]
        items = [TrainItem(str(s.path), s.score, name, keys[style][name]) for s in samples]
        scores[style, name] = trainer.predict(model, items, eval_tf)
        assert row.metrics == score_split(split, samples, scores[style, name], n_train=0).metrics
    assert not np.allclose(scores["general", "koniq10k"], scores["quality", "koniq10k"])   # prompts matter
