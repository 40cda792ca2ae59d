"""The GRMP-IQA recipes (and gamma-qgr-fewshot): each loads, plans the paper's units on stand-in
datasets under the real dataset names, and one unit of each trains for one step on test-tiny; the
zero-shot variants read checkpoints whose parameters match the meta-training variant that writes them."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr

from perceptiq.cli.train import default_run_dir
from perceptiq.data import LabeledDataset, Sample, get_dataset_spec
from perceptiq.models import build_model
from perceptiq.models.checkpoints import load_checkpoint
from perceptiq.recipes import list_recipes, load_recipe, resolve_variant
from perceptiq.training import TrainConfig, Trainer, experiment
from perceptiq.training.experiment import build_run_model, plan_runs, run_experiment
from perceptiq.training.meta_training import run_meta_recipe

TINY = ["model.backbone=test-tiny", "model.weights=random"]
ONE_STEP = ["train.epochs=1", "train.max_steps_per_epoch=1", "train.batch_size=2", "train.workers=0",
            "train.precision=fp32", "train.warmup_epochs=0", "train.eval_batch_size=16"]
GRMP_RECIPES = ["grmp-meta", "grmp-fewshot", "grmp-full", "grmp-cross", "grmp-zeroshot", "grmp-init-ablation",
                "grmp-qgr-ablation", "grmp-lambda"]
FINETUNE_RECIPES = ["grmp-fewshot", "grmp-full", "grmp-cross", "grmp-init-ablation", "grmp-qgr-ablation",
                    "grmp-lambda"]
ZERO_SHOT_TO_META = {"clip": None, "encoders": "encoders", "text-only": "text-only",
                     "visual-only": "visual-only", "erm": "erm", "full": ""}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """test-tiny is so small that two threads' synchronisation costs more than it saves on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _stand_in(name: str, folder: Path, n: int) -> LabeledDataset:
    """``n`` labelled 8x8 images under dataset ``name``'s real spec; synthetic sets (LIVE, CSIQ, PIPAL,
    TID2013, KADID) get references and distortion types, as their parsers give, authentic ones none."""
    spec = get_dataset_spec(name)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(name))
    samples = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
        synthetic = {"ref": f"r{i // 5}", "distortion": f"d{i % 3}", "level": 1 + i % 5} if spec.synthetic else {}
        samples.append(Sample(path=path, label=float(i % 7), score=(i % 7) / 6, dataset=spec.name, **synthetic))
    return LabeledDataset(spec, samples, folder)


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """Every dataset the GRMP recipes name: 260 samples (enough for 200 shots of an 80 % part)."""
    root = tmp_path_factory.mktemp("stand_ins")
    names = ["tid2013", "kadid10k", "livec", "koniq10k", "csiq", "live", "pipal", "livefb", "spaq"]
    return {name: _stand_in(name, root / name, 260) for name in names}


@pytest.fixture(scope="module")
def small_stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    names = ["tid2013", "kadid10k", "livec", "koniq10k", "csiq", "live", "pipal", "livefb", "spaq"]
    return {name: _stand_in(name, root / name, 20) for name in names}


@pytest.fixture()
def fake_loading(monkeypatch):
    """Make the runner read stand-ins instead of dataset folders (the recipe keeps its dataset names)."""
    def install(datasets):
        def load(names, roots, *, missing="error"):
            return {name: datasets[name] for name in names}
        monkeypatch.setattr(experiment, "load_datasets", load)
    return install


@pytest.fixture(scope="module")
def meta_checkpoints(tmp_path_factory, small_stand_ins):
    """One-step meta-training of the default and every variant of grmp-meta: {variant: checkpoint}."""
    root = tmp_path_factory.mktemp("meta")
    original = experiment.load_datasets
    experiment.load_datasets = lambda names, roots, missing="error": {n: small_stand_ins[n] for n in names}
    try:
        out = {}
        for variant in ["", "encoders", "text-only", "visual-only", "erm"]:
            recipe = resolve_variant(load_recipe("grmp-meta", TINY + [
                "meta.epochs=1", "meta.max_steps_per_epoch=1", "meta.support_batch=2", "meta.query_batch=2",
                "meta.workers=0", "meta.precision=fp32", "meta.tasks_per_step=2"]), variant or None)
            result = run_meta_recipe(recipe, {}, root / (variant or "default"))
            out[variant] = result.checkpoint
    finally:
        experiment.load_datasets = original
    return out


def test_every_recipe_is_listed_described_and_cites_the_paper():
    shipped = set(list_recipes())
    for name in GRMP_RECIPES + ["gamma-qgr-fewshot"]:
        assert name in shipped
        recipe = load_recipe(name)
        assert recipe["name"] == name and recipe["description"] and recipe["paper"]
        for variant in recipe.get("variants") or {}:
            resolve_variant(recipe, variant)     # every variant applies cleanly


SYNTHETIC = {"live", "csiq", "pipal", "tid2013", "kadid10k"}   # split by reference image (GRMP's protocol)
TEN = tuple(range(10))                                           # split seeds 0..9: ten repeats


def _separate(datasets, shots=(), fractions=None, seeds=TEN):
    """What a separate-protocol recipe must plan: {label: (dataset, mode, base mode, k or fraction, seed)}."""
    plan = {}
    for name in datasets:
        base = "by_reference" if name in SYNTHETIC else "random"
        if fractions:
            settings = [("subset_fraction", fractions[name], f"-fraction{fractions[name]}")]
        elif shots:
            settings = [("k_shot", k, f"-k{k}") for k in shots]
        else:
            settings = [(base, None, "")]
        for mode, value, tag in settings:
            for seed in seeds:
                plan[f"{name}{tag}-seed{seed}"] = (name, mode, base if mode != base else None, value, seed)
    return plan


# The paper's units, written out: Table 1 (5 datasets x 50/100/200 shots x 10 splits), Table 2 (6 datasets,
# 80 %, and the data-efficient ratios), Table 3 (the five source -> target pairs), Table 4 (3 datasets,
# whole), Table 5 (LIVEC, KonIQ, 50 shots), Table 6 (LIVEC, KonIQ, 50/100), Table 7 (KonIQ, 50/100/200).
PAPER_UNITS = {
    "grmp-fewshot": _separate(["livec", "koniq10k", "csiq", "live", "pipal"], shots=(50, 100, 200)),
    "grmp-full": _separate(["live", "csiq", "livec", "koniq10k", "livefb", "spaq"]),
    "grmp-full:data-efficient": _separate(["live", "csiq", "livec", "koniq10k", "livefb", "spaq"], fractions={
        "live": 0.2, "csiq": 0.2, "livec": 0.2, "koniq10k": 0.3, "livefb": 0.1, "spaq": 0.2}),
    "grmp-init-ablation": _separate(["livec", "koniq10k"], shots=(50,)),
    "grmp-qgr-ablation": _separate(["livec", "koniq10k"], shots=(50, 100)),
    "grmp-lambda": _separate(["koniq10k"], shots=(50, 100, 200)),
}
CROSS_UNITS = {"livefb-to-koniq10k+livec": ("livefb", ["koniq10k", "livec"]), "livec-to-koniq10k": ("livec", ["koniq10k"]),
               "koniq10k-to-livec": ("koniq10k", ["livec"]), "live-to-csiq": ("live", ["csiq"]),
               "csiq-to-live": ("csiq", ["live"])}


@pytest.mark.parametrize("name", sorted(PAPER_UNITS))
def test_separate_recipes_plan_the_papers_datasets_shots_and_splits(name, stand_ins):
    recipe = load_recipe(*name.split(":")[:1], variant=(name.split(":") + [None])[1])
    units = plan_runs(recipe, {n: stand_ins[n] for n in experiment.datasets_needed(recipe)})
    expected = PAPER_UNITS[name]
    assert [u.label for u in units] == list(expected)          # every unit, in order, none extra
    for unit in units:
        dataset, mode, base, value, seed = expected[unit.label]
        assert list(unit.train) == list(unit.test) == [dataset], unit.label
        split, test = unit.test[dataset]
        assert (split.dataset, split.mode, split.seed) == (dataset, mode, seed), unit.label
        if base is not None:
            assert split.params["base_mode"] == base, unit.label
        train = unit.train[dataset]
        if mode == "k_shot":
            assert len(train) == value, unit.label                  # exactly k labelled images
        elif mode == "subset_fraction":
            assert len(train) == round(value * len(stand_ins[dataset])), unit.label   # of the whole set
        else:
            assert split.params["train_fraction"] == 0.8
        assert len(test) == len(split.test) and not {s.path for s in train} & {s.path for s in test}
        if dataset in SYNTHETIC:                                    # no reference image on both sides
            assert not {s.ref for s in train} & {s.ref for s in test}, unit.label


def test_cross_and_zero_shot_recipes_plan_the_papers_pairs_and_datasets(stand_ins):
    cross = load_recipe("grmp-cross")
    units = plan_runs(cross, {n: stand_ins[n] for n in experiment.datasets_needed(cross)})
    assert [u.label for u in units] == list(CROSS_UNITS)
    for unit in units:
        source, targets = CROSS_UNITS[unit.label]
        assert list(unit.train) == [source] and unit.train[source] == list(stand_ins[source].samples)   # whole source
        assert list(unit.test) == targets
        for target in targets:
            split, test = unit.test[target]
            assert split.mode == "whole_test" and test == list(stand_ins[target].samples)      # whole target
    zero = load_recipe("grmp-zeroshot")
    (unit,) = plan_runs(zero, {n: stand_ins[n] for n in experiment.datasets_needed(zero)})
    assert not unit.train and list(unit.test) == ["livec", "koniq10k", "pipal"]
    assert all(split.mode == "whole_test" and len(test) == 260 for split, test in unit.test.values())


def test_fewshot_schedule_and_table_settings():
    fewshot = load_recipe("grmp-fewshot")
    train = fewshot["train"]
    assert (train["optimizer"], train["lr"], train["scheduler"], train["batch_size"]) == ("sgd", 0.002, "cosine", 32)
    assert (train["warmup_epochs"], train["warmup_lr"], train["qgr_lambda"], train["step"]) == (1, 1e-5, 5.0, "qgr")
    assert fewshot["model"]["trainable"] == "prompts+last4"
    # Tables 5-7 change exactly one thing of the few-shot schedule.
    for name, changed in (("grmp-init-ablation", {"qgr_lambda": 0.0}), ("grmp-qgr-ablation", {}), ("grmp-lambda", {})):
        assert load_recipe(name)["train"] == {**train, **changed}, name
    assert load_recipe("grmp-init-ablation")["variants"]["none"] == {"model": {"init": None}}
    lams = [v["train"]["qgr_lambda"] for v in load_recipe("grmp-lambda")["variants"].values()]
    assert len(lams) == 5 and 5.0 in lams and 0.0 in lams
    full = load_recipe("grmp-full")
    assert (full["train"]["optimizer"], full["train"]["lr"], full["train"]["epochs"]) == ("adamw", 5e-6, 9)
    assert full["train"]["crops_per_image"] == 10
    assert full["per_dataset"]["livec"]["batch_size"] == 16 and full["per_dataset"]["koniq10k"]["batch_size"] == 128
    efficient = resolve_variant(full, "data-efficient")["protocol"]["fraction_by_dataset"]
    assert efficient == {"live": 0.2, "csiq": 0.2, "livec": 0.2, "koniq10k": 0.3, "livefb": 0.1, "spaq": 0.2}


def test_init_paths_are_where_meta_train_writes():
    meta_dir = default_run_dir("grmp-meta")
    for name in FINETUNE_RECIPES + ["grmp-zeroshot"]:
        assert load_recipe(name)["model"]["init"] == str(meta_dir / "model.safetensors"), name
    zero = load_recipe("grmp-zeroshot")
    for variant, meta_variant in ZERO_SHOT_TO_META.items():
        init = resolve_variant(zero, variant)["model"]["init"]
        if meta_variant is None:
            assert init is None
        else:
            name = "grmp-meta" + (f":{meta_variant}" if meta_variant else "")
            assert init == str(default_run_dir(name) / "model.safetensors"), variant
    assert load_recipe("grmp-init-ablation")["variants"]["erm"]["model"]["init"] == \
        str(default_run_dir("grmp-meta:erm") / "model.safetensors")


@pytest.mark.parametrize("variant", list(ZERO_SHOT_TO_META))
def test_zero_shot_variants_load_every_meta_learned_parameter(variant, meta_checkpoints):
    recipe = resolve_variant(load_recipe("grmp-zeroshot", TINY), variant)
    meta_variant = ZERO_SHOT_TO_META[variant]
    if meta_variant is not None:
        recipe["model"]["init"] = str(meta_checkpoints[meta_variant])
    module = build_run_model(recipe, "cpu").module
    state = dict(module.named_parameters())
    if meta_variant is None:
        assert module.visual_prompts is None and "text_context.ctx" not in state
        return
    tensors, config = load_checkpoint(meta_checkpoints[meta_variant])
    assert tensors, "the meta checkpoint holds the trained parameters"
    for key, value in tensors.items():
        torch.testing.assert_close(state[key].detach(), value)
    prompt_keys = {k for k in state if k.startswith(("text_context.", "visual_prompts."))}
    assert prompt_keys <= set(tensors), f"prompts left at their random start: {prompt_keys - set(tensors)}"
    assert config["options"] == recipe["model"]["options"]


@pytest.mark.parametrize("name", FINETUNE_RECIPES + ["grmp-zeroshot", "gamma-qgr-fewshot"])
def test_one_unit_of_each_recipe_trains_one_step(name, small_stand_ins, fake_loading, meta_checkpoints, tmp_path):
    fake_loading(small_stand_ins)
    recipe = load_recipe(name, TINY + ONE_STEP)
    if recipe["protocol"].get("shots"):
        recipe["protocol"]["shots"] = [4]
    recipe["protocol"].pop("fraction_by_dataset", None)
    recipe["protocol"].setdefault("split", {})["n_splits"] = 1
    if name.startswith("grmp"):
        recipe["model"]["init"] = str(meta_checkpoints[""])
    else:
        recipe["model"]["options"] = {**(recipe["model"].get("options") or {}), "n_layers": 1, "n_experts": 2}
    result = run_experiment(recipe, {}, tmp_path, max_runs=1)
    unit = plan_runs(recipe, {n: small_stand_ins[n] for n in experiment.datasets_needed(recipe)})[0]
    # one row per test dataset of the unit, each SRCC finite and equal to Spearman's rho of the saved
    # model's scores on that test part, recomputed here from the checkpoint with scipy
    assert [row.dataset for row in result.result.rows] == list(unit.test)
    if recipe["protocol"]["kind"] == "zero-shot":
        module = build_run_model(recipe, "cpu").module
    else:
        module = build_model(str(result.run_dirs[0] / "model.safetensors"), device="cpu").module
    scorer = Trainer(TrainConfig.from_dict({**recipe["train"], "workers": 0}))   # the recipe's test view
    for row in result.result.rows:
        samples = unit.test[row.dataset][1]
        items = experiment.to_items(samples, small_stand_ins[row.dataset], module)
        predictions = scorer.predict(module, items, scorer.transforms(module)[1])
        rho = spearmanr(predictions, [s.score for s in samples]).statistic
        assert math.isfinite(row.metrics["srcc"]) and row.n_test == len(samples) >= 4
        assert row.metrics["srcc"] == pytest.approx(rho, abs=1e-6), row.dataset
    if recipe["protocol"]["kind"] != "zero-shot":
        run_dir = result.run_dirs[0]
        assert (run_dir / "model.safetensors").is_file()
        steps = (run_dir / "steps.jsonl").read_text().splitlines()
        assert len(steps) == 1
        if recipe["train"].get("step") == "qgr":
            assert '"angle_deg"' in steps[0]


def test_gamma_view_gives_qgr_the_original_clip_and_a_projected_gradient():
    from perceptiq.backbones import create_backbone
    from perceptiq.models.gamma import GammaModel
    from perceptiq.prompts import semantic_prompts
    from perceptiq.training.qgr import qgr_step, quality_gradient_regularization, semantic_kl_loss
    from perceptiq.training.qgr_views import GammaQGRView, qgr_view

    plain = create_backbone("test-tiny", "random", seed=0)
    gamma = GammaModel(create_backbone("test-tiny", "random", seed=0), scene="natural", n_layers=2, n_experts=2)
    with torch.no_grad():     # make the experts differ from the shared FFN, as after training
        for name, p in gamma.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    view = qgr_view(gamma)
    assert isinstance(view, GammaQGRView)
    pixels = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        image = plain.encode_image(pixels)
        text = plain.encode_text(plain.tokenize(semantic_prompts()))
        expected = torch.softmax(plain.logit_scale * image @ text.t(), dim=-1)
    torch.testing.assert_close(view.frozen_semantic_probabilities(pixels), expected)
    with torch.no_grad():
        torch.testing.assert_close(view.quality_probability(image_features=view.image_features(pixels)),
                                   gamma(pixels).scores)
    # qgr_step on the view writes Eq. 8's projection of Gamma's own gradients.
    params = [p for p in gamma.parameters() if p.requires_grad]
    targets = torch.tensor([0.2, 0.5, 0.9])
    info = qgr_step(view, pixels, targets, 5.0, params=params, quality_loss=torch.nn.functional.mse_loss)
    written = [p.grad.clone() for p in params]
    features = view.image_features(pixels)
    g_qua = torch.autograd.grad(torch.nn.functional.mse_loss(view.quality_probability(image_features=features),
                                                             targets), params, retain_graph=True,
                                allow_unused=True, materialize_grads=True)
    g_sem = torch.autograd.grad(semantic_kl_loss(view.frozen_semantic_probabilities(pixels),
                                                 view.semantic_log_probabilities(image_features=features)),
                                params, allow_unused=True, materialize_grads=True)
    reference, reference_info = quality_gradient_regularization(list(g_qua), list(g_sem), 5.0)
    assert info["angle_deg"] == pytest.approx(reference_info["angle_deg"], abs=1e-4)
    assert info["projected"] == (info["dot"] > 0)
    for got, want in zip(written, reference):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="fixed prompt key"):
        GammaQGRView(GammaModel(create_backbone("test-tiny", "random"), scene="auto", n_layers=1, n_experts=1))
