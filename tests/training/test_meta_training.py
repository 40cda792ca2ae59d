"""Meta pre-training loop (GRMP-IQA section 3.3): distortion tasks, the epoch plan, the loop lowering the
query loss on a tiny synthetic dataset, the ERM ablation, and the checkpoint it leaves."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from perceptiq.data import LabeledDataset, Sample, get_dataset_spec, load_generic_csv, synthesize
from perceptiq.models import build_model
from perceptiq.training import experiment
from perceptiq.training.meta_training import (
    MetaTrainingConfig,
    build_distortion_tasks,
    plan_epoch,
    run_meta_recipe,
)

from ..conftest import textured_image

TYPES = ["darken", "contrast_change"]   # global statistics a random tiny CLIP's features do carry


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """test-tiny is so small that two threads' synchronisation costs more than it saves on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """8 references x 2 types x 5 levels = 80 images: 32 support + 8 query per task."""
    root = tmp_path_factory.mktemp("meta")
    for i in range(8):
        textured_image(i, (96, 80)).save(root / f"src{i}.png")
    labels = synthesize(root, root / "synthetic", types=TYPES, seed=0)
    return load_generic_csv(labels)


def _recipe(**meta):
    return {"name": "toy-meta",
            "model": {"name": "grmp-iqa", "backbone": "test-tiny", "weights": "random", "trainable": "prompts"},
            "protocol": {"kind": "meta", "datasets": ["csv"]},
            "meta": {"support_batch": 8, "query_batch": 8, "tasks_per_step": 2, "precision": "fp32", **meta}}


@pytest.fixture()
def use(monkeypatch):
    def install(dataset):
        monkeypatch.setattr(experiment, "load_datasets", lambda names, roots, missing="error": {"csv": dataset})
    return install


def test_tasks_are_distortion_types_split_80_20(synthetic):
    tasks = build_distortion_tasks({"csv": synthetic}, support_fraction=0.8, seed=0)
    assert [t.name for t in tasks] == [f"csv/{t}" for t in TYPES]
    for task in tasks:
        support, query = {i.path for i in task.support}, {i.path for i in task.query}
        assert (len(support), len(query)) == (32, 8) and not support & query
        expected = {str(s.path) for s in synthetic.samples if s.distortion == task.name.split("/")[1]}
        assert support | query == expected
        assert all(0 <= i.target <= 1 for i in task.support + task.query)
    again = build_distortion_tasks({"csv": synthetic}, support_fraction=0.8, seed=0)
    other = build_distortion_tasks({"csv": synthetic}, support_fraction=0.8, seed=1)
    assert again == tasks and other != tasks


def test_samples_without_a_distortion_type_are_refused(synthetic):
    spec = get_dataset_spec("livec")
    plain = LabeledDataset(spec, [Sample(path=s.path, label=s.label, score=s.score) for s in synthetic.samples[:3]],
                           synthetic.root)
    with pytest.raises(ValueError, match=r"livec: sample 0 .*no distortion type"):
        build_distortion_tasks({"livec": plain})


def test_an_epoch_uses_every_support_image_once(synthetic):
    tasks = build_distortion_tasks({"csv": synthetic})
    config = MetaTrainingConfig(support_batch=8, query_batch=4, tasks_per_step=2)
    plan = plan_epoch(tasks, config, np.random.default_rng(0))
    used = Counter((part.task, i) for meta_batch in plan for part in meta_batch for i in part.support)
    assert used == Counter((t, i) for t, task in enumerate(tasks) for i in range(len(task.support)))
    for meta_batch in plan:
        assert len(meta_batch) == 2 and len({p.task for p in meta_batch}) == 2
        assert all(len(p.support) == 8 and len(p.query) == 4 and len(set(p.query)) == 4 for p in meta_batch)
    assert len(plan) == 4        # 32 support images per task in batches of 8, two tasks a step
    # A partial last batch is dropped (reshuffled every epoch, so no image is always left out) ...
    uneven = plan_epoch(tasks, MetaTrainingConfig(support_batch=5, tasks_per_step=2), np.random.default_rng(0))
    assert Counter(p.task for mb in uneven for p in mb for _ in p.support) == {0: 30, 1: 30}
    # ... unless a task has less than one batch: then it brings all of it, once.
    small = plan_epoch(tasks, MetaTrainingConfig(support_batch=50, tasks_per_step=5), np.random.default_rng(0))
    assert len(small) == 1 and sorted(len(p.support) for p in small[0]) == [32, 32]


def test_config_checks_and_decay():
    config = MetaTrainingConfig.from_dict({"beta": 0.01, "lr_decay": 0.9, "decay_every_epochs": 2})
    assert [round(config.lr_at(e), 6) for e in range(5)] == [0.01, 0.01, 0.009, 0.009, 0.0081]
    assert (config.alpha, config.epochs, config.tasks_per_step, config.support_fraction) == (1e-4, 50, 5, 0.8)
    with pytest.raises(ValueError, match="unknown meta-training setting"):
        MetaTrainingConfig.from_dict({"betta": 1})
    with pytest.raises(ValueError, match="meta.method"):
        MetaTrainingConfig(method="maml")


def test_meta_training_lowers_the_query_loss_and_saves_a_scoring_checkpoint(synthetic, use, tmp_path):
    use(synthetic)
    # A larger outer rate than the paper's 1e-2: the tiny random model's features barely differ.
    result = run_meta_recipe(_recipe(epochs=8, beta=0.05, lr_decay=1.0), {}, tmp_path)
    losses = [e.query_loss for e in result.epochs]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.02, losses
    assert all(e.n_steps == 4 for e in result.epochs)          # 32 support images / 8 per batch, 2 tasks a step
    logged = [json.loads(line) for line in (tmp_path / "epochs.jsonl").read_text().splitlines()]
    assert [r["query_loss"] for r in logged] == pytest.approx(losses)
    assert len((tmp_path / "steps.jsonl").read_text().splitlines()) == 32
    # The checkpoint holds the prompts only and rebuilds the trained model.
    bundle = build_model(str(result.checkpoint))
    config = json.loads((tmp_path / "model.json").read_text())
    assert sorted(config["trained_parameters"]) == ["text_context.ctx", "visual_prompts.prompts"]
    pixels = torch.randn(2, 3, 224, 224)
    fresh = build_model("grmp-iqa", backbone="test-tiny", weights="random").module
    with torch.no_grad():
        assert not torch.allclose(bundle.module(pixels).scores, fresh(pixels).scores)
        for name, tensor in fresh.backbone.state_dict().items():    # the backbone itself never moved
            torch.testing.assert_close(bundle.module.backbone.state_dict()[name], tensor)


def test_erm_ablation_sees_the_same_steps(synthetic, use, tmp_path):
    use(synthetic)
    meta = run_meta_recipe(_recipe(epochs=1, method="meta"), {}, tmp_path / "meta")
    erm = run_meta_recipe(_recipe(epochs=1, method="erm"), {}, tmp_path / "erm")
    assert [s["n_tasks"] for s in erm.steps] == [s["n_tasks"] for s in meta.steps]
    assert erm.steps[0]["support_loss"] == pytest.approx(meta.steps[0]["support_loss"], abs=1e-5)  # same start and batch
    assert erm.steps[-1]["support_loss"] != pytest.approx(meta.steps[-1]["support_loss"], abs=1e-7)
    assert json.loads((tmp_path / "erm" / "model.json").read_text())["meta"]["method"] == "erm"


def test_a_recipe_of_another_protocol_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs 'meta'"):
        run_meta_recipe({**_recipe(), "protocol": {"kind": "separate", "datasets": ["csv"]}}, {}, tmp_path)
