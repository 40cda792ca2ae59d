"""Runs that survive being stopped (perceptiq.training.resume): a loop stopped after k epochs and resumed
ends exactly where an uninterrupted one does (trainer and meta-training), the state is committed
atomically, a recipe run reads finished units back, and a resume with other settings is refused.

Equality: in fp32 on one machine the resumed loop performs the same operations in the same order, so the
parameters are compared within ``ULPS`` units in the last place of their dtype (in practice they are
bitwise equal); a tolerance derived from the dtype, not fitted to one CPU.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from perceptiq.models import build_model
from perceptiq.training import TrainConfig, Trainer, TrainItem
from perceptiq.training import experiment, resume
from perceptiq.training.meta_training import MetaTrainingConfig, build_distortion_tasks, meta_train

from ..conftest import textured_image

ULPS = 4


def assert_within_ulps(actual: torch.Tensor, expected: torch.Tensor, name: str = "", ulps: int = ULPS) -> None:
    """|a - e| <= ulps * eps(dtype) * max(|a|, |e|) elementwise (plus ulps * the smallest normal, for 0)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, name
    info = torch.finfo(expected.dtype)
    scale = torch.maximum(actual.abs(), expected.abs())
    bound = ulps * (info.eps * scale + info.tiny)
    excess = ((actual - expected).abs() - bound).max()
    assert excess <= 0, f"{name}: differs by more than {ulps} ulps (max |diff| {(actual - expected).abs().max():.3g})"


def assert_same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    pa = {n: p.detach() for n, p in a.named_parameters() if p.requires_grad}
    pb = {n: p.detach() for n, p in b.named_parameters() if p.requires_grad}
    assert pa.keys() == pb.keys() and pa
    for name in pa:
        assert_within_ulps(pb[name], pa[name], name)


class Stop(Exception):
    """Stands for the process being killed right after an epoch's state was committed."""


def stop_after(epochs: int):
    def on_epoch(record):
        if record.epoch == epochs:
            raise Stop
    return on_epoch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    """10 non-square images whose target is their brightness (random crops and flips differ per draw)."""
    root = tmp_path_factory.mktemp("resume_items")
    out = []
    for i in range(10):
        gain = 0.3 + 0.06 * i
        array = np.clip(np.asarray(textured_image(i, (72, 48)), dtype=np.float64) * gain, 0, 255).astype(np.uint8)
        path = root / f"im{i}.png"
        Image.fromarray(array).save(path)
        out.append(TrainItem(str(path), float(array.mean() / 255), "toy"))
    return out


def _gamma():
    return build_model("gamma", backbone="test-tiny", weights="random", n_layers=1, n_experts=2).module


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_trainer_stopped_and_resumed_ends_like_an_uninterrupted_one(items, tmp_path, optimizer):
    config = TrainConfig(epochs=3, batch_size=4, lr=1e-2, optimizer=optimizer, scheduler="cosine", seed=3)
    eval_sets = {"toy": items[:6]}
    straight = _gamma()
    expected = Trainer(config, out_dir=tmp_path / "straight").fit(straight, items, eval_sets)

    with pytest.raises(Stop):
        Trainer(config, out_dir=tmp_path / "stopped", run_id="r").fit(_gamma(), items, eval_sets, stop_after(1))
    state = json.loads((tmp_path / "stopped" / "state" / "state.json").read_text())
    assert state["epoch"] == 1 and state["run_id"] == "r"
    resumed = _gamma()   # a new process builds the model afresh; the state brings it to epoch 1
    got = Trainer(config, out_dir=tmp_path / "stopped", run_id="r").fit(resumed, items, eval_sets, resume=True)

    assert_same_parameters(straight, resumed)
    assert [s["loss"] for s in got.steps] == [s["loss"] for s in expected.steps]
    assert [(e.epoch, e.lr, e.train_loss, e.metrics) for e in got.epochs] == \
           [(e.epoch, e.lr, e.train_loss, e.metrics) for e in expected.epochs]
    assert got.final_metrics == expected.final_metrics and np.isfinite(got.final_metrics["toy"]["srcc"])
    np.testing.assert_array_equal(got.final_predictions["toy"], expected.final_predictions["toy"])
    logged = [json.loads(line)["epoch"] for line in (tmp_path / "stopped" / "epochs.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3]                                     # no epoch logged twice
    assert sorted(p.name for p in (tmp_path / "stopped" / "state").iterdir()) == \
           ["epoch-0003.safetensors", "state.json"]                # one committed state, no leftovers


def test_resume_only_takes_the_state_of_the_same_run(items, tmp_path):
    config = TrainConfig(epochs=2, batch_size=5, lr=1e-2)
    with pytest.raises(Stop):
        Trainer(config, out_dir=tmp_path, run_id="old").fit(_gamma(), items, on_epoch=stop_after(1))
    result = Trainer(config, out_dir=tmp_path, run_id="new").fit(_gamma(), items, resume=True)
    assert [e.epoch for e in result.epochs] == [1, 2] and len(result.steps) == 4   # started afresh


def test_a_stopped_meta_training_resumes_to_the_uninterrupted_result(tmp_path):
    from perceptiq.data import load_generic_csv, synthesize

    for i in range(4):
        textured_image(i, (72, 60)).save(tmp_path / f"src{i}.png")
    dataset = load_generic_csv(synthesize(tmp_path, tmp_path / "synthetic", types=["darken", "contrast_change"],
                                          levels=[1, 3, 5], seed=0))
    config = MetaTrainingConfig(epochs=3, support_batch=4, query_batch=2, tasks_per_step=2, beta=0.05,
                                max_steps_per_epoch=2, precision="fp32")
    tasks = build_distortion_tasks({"csv": dataset}, config.support_fraction, config.seed)

    def model():
        module = build_model("grmp-iqa", backbone="test-tiny", weights="random").module
        module.set_trainable("prompts")
        return module

    straight = model()
    expected = meta_train(straight, tasks, config, out_dir=tmp_path / "straight")
    with pytest.raises(Stop):
        meta_train(model(), tasks, config, out_dir=tmp_path / "stopped", run_id="r", on_epoch=stop_after(2))
    resumed = model()
    got = meta_train(resumed, tasks, config, out_dir=tmp_path / "stopped", run_id="r", resume=True)
    assert_same_parameters(straight, resumed)
    assert got.steps == expected.steps and len(got.steps) == 6
    assert [(e.support_loss, e.query_loss) for e in got.epochs] == [(e.support_loss, e.query_loss) for e in expected.epochs]


def test_the_state_is_committed_atomically(tmp_path, monkeypatch):
    """A kill while the tensors are written, or between the tensors and state.json, leaves the previous
    epoch's state loadable; the next save removes what the interrupted one left."""
    layer = torch.nn.Linear(3, 2)
    named = dict(layer.named_parameters())
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    layer(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    resume.save_loop_state(tmp_path, epoch=1, parameters=named, optimizer=optimizer, progress={"n": 1})
    saved_weight = layer.weight.detach().clone()

    def killed_mid_write(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt   # stands for the signal
    monkeypatch.setattr(resume, "save_file", killed_mid_write)
    with torch.no_grad():
        layer.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        resume.save_loop_state(tmp_path, epoch=2, parameters=named, optimizer=optimizer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0001.safetensors", "state.json"]
    monkeypatch.undo()

    def killed_before_commit(path, payload, indent=2):
        raise KeyboardInterrupt
    monkeypatch.setattr(resume, "atomic_write_json", killed_before_commit)
    with pytest.raises(KeyboardInterrupt):
        resume.save_loop_state(tmp_path, epoch=2, parameters=named, optimizer=optimizer)
    monkeypatch.undo()
    state = resume.load_loop_state(tmp_path)
    assert state.epoch == 1 and state.progress == {"n": 1}
    fresh = torch.nn.Linear(3, 2)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=0.1)
    state.restore(dict(fresh.named_parameters()), fresh_optimizer)
    assert torch.equal(fresh.weight, saved_weight)
    assert torch.equal(fresh_optimizer.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    resume.save_loop_state(tmp_path, epoch=2, parameters=named, optimizer=optimizer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0002.safetensors", "state.json"]


def test_rng_states_come_back():
    import random

    generator, numpy_generator = torch.Generator().manual_seed(5), np.random.default_rng(5)
    tensors, info = resume.capture_rng({"g": generator, "n": numpy_generator})
    info = json.loads(json.dumps(info))                       # as read back from state.json
    first = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=generator),
             numpy_generator.random())
    resume.restore_rng(tensors, info, {"g": generator, "n": numpy_generator})
    again = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=generator),
             numpy_generator.random())
    assert first[:2] == again[:2] and first[4] == again[4]
    assert torch.equal(first[2], again[2]) and torch.equal(first[3], again[3])


def test_resume_with_other_settings_is_refused_naming_the_keys(tmp_path):
    recipe = {"name": "r", "train": {"lr": 0.001, "epochs": 2}, "protocol": {"kind": "mixed"}}
    run_id = resume.record_new_run(tmp_path, resume.run_identity(recipe, {"csv": tmp_path}))
    same = resume.run_identity(json.loads(json.dumps(recipe)), {"csv": str(tmp_path / "." )})
    assert resume.check_recorded_run(tmp_path, same) == run_id
    other = {**recipe, "train": {"lr": 0.002, "epochs": 2, "seed": 1}}
    with pytest.raises(resume.ResumeMismatchError) as refused:
        resume.check_recorded_run(tmp_path, resume.run_identity(other, {"csv": tmp_path / "elsewhere"}))
    message = str(refused.value)
    assert "3 differ" in message
    assert "recipe.train.lr: recorded 0.001, now 0.002" in message and "recipe.train.seed: recorded absent" in message
    assert "data.csv" in message
    assert resume.check_recorded_run(tmp_path / "new", same) is None   # nothing recorded: a new run


def _csv_dataset(folder, n=20):
    import csv

    folder.mkdir(parents=True)
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "score"])
        for i in range(n):
            textured_image(i, (48, 40)).save(folder / f"a{i}.png")
            writer.writerow([f"a{i}.png", (i % 5) / 4])
    return folder / "labels.csv"


def test_a_resumed_recipe_run_reads_finished_units_back(tmp_path, monkeypatch):
    roots = {"csv": _csv_dataset(tmp_path / "data")}
    recipe = {"name": "toy", "model": {"name": "gamma", "backbone": "test-tiny", "weights": "random",
                                       "options": {"n_layers": 1, "n_experts": 2}},
              "protocol": {"kind": "mixed", "datasets": ["csv"], "split": {"mode": "random", "n_splits": 2}},
              "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3}}
    first = experiment.run_experiment(recipe, roots, tmp_path / "run")
    results = (tmp_path / "run" / "results.csv").read_text()
    assert not (tmp_path / "run" / "split00" / "state").exists()    # a finished unit keeps no resume state
    # as if the run had been killed before split01 was recorded
    (tmp_path / "run" / "split01" / "unit.json").unlink()
    trained = []
    real_fit = experiment.Trainer.fit

    def counting_fit(self, model, *args, **kwargs):
        trained.append(self.out_dir.name)
        return real_fit(self, model, *args, **kwargs)
    monkeypatch.setattr(experiment.Trainer, "fit", counting_fit)
    again = experiment.run_experiment(recipe, roots, tmp_path / "run", resume=True)
    assert trained == ["split01"]
    as_json = lambda rows: json.dumps(experiment.rows_to_json(rows))   # NaN metrics compare equal as text
    assert as_json(again.result.rows) == as_json(first.result.rows)
    assert (tmp_path / "run" / "results.csv").read_text() == results
    with pytest.raises(resume.ResumeMismatchError, match="recipe.train.lr"):
        experiment.run_experiment({**recipe, "train": {**recipe["train"], "lr": 1e-2}}, roots, tmp_path / "run",
                                  resume=True)
