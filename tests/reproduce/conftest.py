"""Shared fixtures of the reproduce tests: replicas of every dataset in its native layout (20 images each,
and 260-image ones of the datasets few-shot targets draw 200 training images from), one runs folder for
the whole session (targets that share a run train it once, as they do for a user; a run is reused only
for the same recipe and the same data), and the overrides that make every recipe tiny."""
from __future__ import annotations

import pytest
import torch

from perceptiq.reproduce.runs import RunContext

from ..data.replicas import CSV_DATASETS, SIZED_BUILDERS, build_sized

#: datasets some target samples 200 images from (k-shot needs k training images of the 80 % part)
FEW_SHOT = ("livec", "koniq10k", "csiq", "live", "pipal", "agiqa3k")
#: every recipe as small as it gets: the 12-block tiny CLIP (Gamma Table 5 puts MoAE in up to 12 blocks),
#: one split, one epoch of one step, one test crop, no per-dataset schedules
QUICK = ("model.backbone=test-tiny-deep", "model.weights=random", "train.epochs=1", "train.max_steps_per_epoch=1",
         "train.batch_size=4", "train.workers=0", "train.precision=fp32", "train.warmup_epochs=0",
         "train.eval_batch_size=64", "train.crops_per_image=1", "train.test_view=resize", "per_dataset=null",
         "protocol.split.n_splits=1",
         "meta.epochs=1", "meta.max_steps_per_epoch=1", "meta.support_batch=2", "meta.query_batch=2",
         "meta.workers=0", "meta.precision=fp32", "meta.tasks_per_step=2")


@pytest.fixture(scope="session")
def replica_roots(tmp_path_factory):
    """{dataset: ROOT} for every dataset any target reads, 20 images each (Waterloo: 6 pristine images,
    which gMAD turns into 6 + 120 with the four distortion types at five levels)."""
    folder = tmp_path_factory.mktemp("replicas")
    return {name: str(build_sized(name, folder / name, 6 if name == "waterloo" else 20))
            for name in [*SIZED_BUILDERS, *CSV_DATASETS]}


@pytest.fixture(scope="session")
def few_shot_roots(tmp_path_factory, replica_roots):
    """``replica_roots`` with 260-image replicas of the datasets few-shot recipes draw 50/100/200 images from."""
    folder = tmp_path_factory.mktemp("few_shot_replicas")
    return {**replica_roots, **{name: str(build_sized(name, folder / name, 260)) for name in FEW_SHOT}}


def uses_shots(target) -> bool:
    from perceptiq.reproduce.runs import base_recipe

    return any((base_recipe(run).get("protocol") or {}).get("shots") for run in target.steps)


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture()
def quick_context(replica_roots, few_shot_roots, runs_dir):
    """A function: the context for a target (the large replicas where it draws k training images)."""
    def make(target) -> RunContext:
        return RunContext(roots=few_shot_roots if uses_shots(target) else replica_roots, runs_dir=runs_dir,
                          overrides=QUICK)
    return make


@pytest.fixture()
def one_thread():
    """Tiny models: one torch thread (two spin against each other on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
