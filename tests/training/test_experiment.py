"""Recipes and the experiment runner: overrides, variants, the four protocols, results and checkpoints."""
from __future__ import annotations

import csv

import pytest
import torch

from perceptiq.data import load_generic_csv
from perceptiq.models import build_model
from perceptiq.recipes import apply_override, list_recipes, load_recipe, resolve_variant
from perceptiq.training.experiment import plan_runs, run_experiment

from ..conftest import textured_image


def _csv_dataset(folder, name, n=12, offset=0):
    folder.mkdir(parents=True)
    rows = []
    for i in range(n):
        textured_image(offset + i, (48, 40)).save(folder / f"{name}{i}.png")
        rows.append([f"{name}{i}.png", (i % 5) / 4, f"ref{i // 3}", "blur"])
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "score", "ref", "distortion"])
        writer.writerows(rows)
    return folder / "labels.csv"


def _recipe(kind, **protocol):
    return {
        "name": f"toy-{kind}",
        "model": {"name": "gamma", "backbone": "test-tiny", "weights": "random",
                  "options": {"n_layers": 1, "n_experts": 2}},
        "protocol": {"kind": kind, "split": {"mode": "random", "n_splits": 2}, **protocol},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
    }


def test_overrides_variants_and_hints():
    recipe = {"name": "r", "train": {"lr": 1.0}, "variants": {"fast": {"train": {"lr": 2.0, "epochs": 1}}}}
    apply_override(recipe, "train.batch_size=16")
    apply_override(recipe, "model.options.n_experts=5")
    assert recipe["train"]["batch_size"] == 16 and recipe["model"]["options"]["n_experts"] == 5
    fast = resolve_variant(recipe, "fast")
    assert fast["train"] == {"lr": 2.0, "epochs": 1, "batch_size": 16} and recipe["train"]["lr"] == 1.0
    with pytest.raises(ValueError, match="unknown section"):
        apply_override(recipe, "trian.lr=3")
    with pytest.raises(KeyError, match="no variant"):
        resolve_variant(recipe, "slow")
    with pytest.raises(KeyError, match="unknown recipe"):
        load_recipe("no-such-recipe")


def test_a_protocol_key_its_kind_does_not_read_is_refused_with_a_hint():
    with pytest.raises(ValueError, match=r"recipe grmp-fewshot: protocol \(kind separate\): unknown key 'shot'\. "
                                         r"Did you mean 'shots'\?"):
        load_recipe("grmp-fewshot", ["protocol.shot=[50]"])
    # a key another kind reads does nothing here: meta's evaluation sets in a mixed run
    with pytest.raises(ValueError, match=r"protocol \(kind mixed\): unknown key 'eval_datasets'"):
        load_recipe("gamma-mixed", ["protocol.eval_datasets=[live]"])
    assert load_recipe("grmp-fewshot", ["protocol.shots=[50]"])["protocol"]["shots"] == [50]
    for name in list_recipes():        # every shipped recipe and variant reads only keys its kind reads
        for variant in [None, *(load_recipe(name).get("variants") or {})]:
            load_recipe(name, variant=variant)


def test_shipped_recipes_load():
    for name in list_recipes():
        recipe = load_recipe(name)
        assert recipe["protocol"]["kind"] in ("mixed", "separate", "cross", "zero-shot", "meta", "crop-bank"), name


def test_built_in_model_recipe_points_to_build_tiny():
    with pytest.raises(ValueError, match="perceptiq build-tiny --photos"):
        plan_runs(load_recipe("perceptiq-tiny"), {})


def test_plans(tmp_path):
    a = load_generic_csv(_csv_dataset(tmp_path / "a", "a"), name="a")
    b = load_generic_csv(_csv_dataset(tmp_path / "b", "b", offset=50), name="b")
    datasets = {"a": a, "b": b}
    mixed = plan_runs(_recipe("mixed", datasets=["a", "b"]), datasets)
    assert len(mixed) == 2 and set(mixed[0].train) == {"a", "b"}
    for unit in mixed:  # no test image is trained on
        for name in ("a", "b"):
            assert not {s.path for s in unit.train[name]} & {s.path for s in unit.test[name][1]}
    separate = plan_runs(_recipe("separate", datasets=["a", "b"], shots=[3, 6]), datasets)
    assert len(separate) == 2 * 2 * 2 and {len(u.train[next(iter(u.train))]) for u in separate} == {3, 6}
    cross = plan_runs(_recipe("cross", pairs=[["a", "b"]]), datasets)
    assert len(cross) == 1 and len(cross[0].train["a"]) == 12 and len(cross[0].test["b"][1]) == 12
    zero = plan_runs(_recipe("zero-shot", datasets=["a"]), datasets)
    assert zero[0].train == {} and len(zero[0].test["a"][1]) == 12


def test_run_experiment_writes_results_and_loadable_checkpoints(tmp_path):
    roots = {"csv": _csv_dataset(tmp_path / "a", "a", n=20)}
    recipe = _recipe("mixed", datasets=["csv"])
    out = tmp_path / "run"
    result = run_experiment(recipe, roots, out)
    assert (out / "results.md").is_file() and (out / "splits.json").is_file()
    assert len(result.result.rows) == 2 and "median" in (out / "results.md").read_text().lower()
    checkpoint = out / "split00" / "model.safetensors"
    model = build_model(str(checkpoint)).module
    assert torch.isfinite(model(torch.zeros(1, 3, 224, 224)).scores).all()


def test_missing_dataset_roots_are_named(tmp_path):
    with pytest.raises(ValueError, match="--data NAME=ROOT"):
        run_experiment(_recipe("mixed", datasets=["koniq10k"]), {}, tmp_path)


def test_numbers_from_the_command_line_are_numbers_and_set_beats_variant(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nmodel: {name: gamma}\nprotocol: {kind: mixed}\ntrain: {lr: 1.0}\n"
                    "variants: {slow: {train: {lr: 0.5, epochs: 3}}}\n")
    recipe = load_recipe(str(path), ["train.lr=1e-3"], variant="slow")
    assert recipe["train"] == {"lr": 0.001, "epochs": 3}
