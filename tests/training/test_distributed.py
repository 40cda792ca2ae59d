"""Two CPU processes (gloo) train exactly as one process with the same global batch: the standard step
(Gamma), the QGR step (GRMP), sharded evaluation, and the bi-level meta step; and QGR projecting each
rank's own gradients (instead of the all-reduced ones) does *not* give the single-process update.

The two-process run is one ``torch.multiprocessing.spawn`` for the whole module; the reference runs the
same code in this process with a one-process ``DistributedContext`` (same sampler, same order), in fp32
and in fp64. Two processes sum in another order than one, so the fp32 results differ by rounding, which
Adam amplifies where a gradient nearly cancels (a router weight: 3000 ulps here). The tolerance is
therefore not an atol fitted to one CPU: the two-process run must be as accurate as the one-process run,
both measured against the fp64 run (tests/rounding.py, docs/training.md "Tolerances in tests").
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image

from perceptiq.models import build_model
from perceptiq.training import TrainConfig, Trainer, TrainItem
from perceptiq.training.distributed import DistributedContext, GlobalBatchSampler, GlobalGradientMean, shard_bounds
from perceptiq.training.meta import meta_step, model_loss_fn
from perceptiq.training.qgr import all_reduce_mean, qgr_step
from perceptiq.training.transforms import ImageTransform

from ..conftest import textured_image
from ..rounding import assert_as_accurate

N_ITEMS = 11          # global batch 4 -> batches of 4, 4, 3: the last one splits 2 + 1 over two ranks
GLOBAL_BATCH = 4
WORLD = 2
QGR_LAMBDA = 5.0
GAMMA_TINY = {"n_layers": 2, "n_experts": 2}
# The longest sum behind one gradient element: a global batch of test-tiny's longest sequences (77 text
# tokens); sets the floor of the rounding bound (tests/rounding.py)
REDUCTION_LENGTH = GLOBAL_BATCH * 77


def _items(folder) -> list[TrainItem]:
    """Square images (so the 224 'random' crop is the whole image) whose target is their brightness."""
    items = []
    for i in range(N_ITEMS):
        gain = 0.3 + 0.045 * i
        array = np.clip(np.asarray(textured_image(i, (32, 32)), dtype=np.float64) * gain, 0, 255).astype(np.uint8)
        path = folder / f"im{i:02d}.png"
        if not path.exists():
            Image.fromarray(array).save(path)
        items.append(TrainItem(str(path), float(array.mean() / 255), "toy"))
    return items


def _pixels(model, items) -> torch.Tensor:
    info = model.backbone.info
    transform = ImageTransform(info.mean, info.std, resize=info.image_size, crop=info.image_size)
    return torch.stack([transform(it.path) for it in items]).to(model.backbone.clip.logit_scale.dtype)


def _trained(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}


def _scenarios(ctx: DistributedContext, folder, dtype: torch.dtype = torch.float32) -> dict:
    """Everything the tests compare, computed by one rank (or by the single process) in ``dtype`` (models
    are drawn in fp32, so an fp64 run starts from the same values)."""
    torch.manual_seed(0)
    items = _items(folder)
    out: dict = {}

    # 1. standard step, Adam, 2 epochs of 3 steps, sharded evaluation at the end
    gamma = build_model("gamma", backbone="test-tiny", weights="random", **GAMMA_TINY).module.to(dtype)
    config = TrainConfig(epochs=2, batch_size=GLOBAL_BATCH, lr=1e-2, hflip=False, eval_batch_size=4)
    result = Trainer(config, distributed=ctx).fit(gamma, items, {"toy": items})
    out["gamma"] = _trained(gamma)
    out["gamma_losses"] = [e.train_loss for e in result.epochs]
    out["gamma_images"] = [e.n_images for e in result.epochs]
    out["gamma_predictions"] = result.final_predictions["toy"]

    # 2. QGR fine-tuning step (GRMP Eq. 7-8) through the Trainer
    grmp = build_model("grmp-iqa", backbone="test-tiny", weights="random").module.to(dtype)
    config = TrainConfig(epochs=1, batch_size=GLOBAL_BATCH, lr=1e-2, hflip=False, loss="bce", step="qgr",
                         qgr_lambda=QGR_LAMBDA)
    result = Trainer(config, distributed=ctx).fit(grmp, items)
    out["qgr"] = _trained(grmp)
    out["qgr_projected"] = [s["projected"] for s in result.steps]

    # 3. one QGR gradient on one global batch: projecting the global gradients vs each rank's own. A batch
    # that mixes good and bad images (rank 0 gets the good, rank 1 the bad) makes the ranks' G_qua point
    # different ways, so one rank's G_qua . G_sem is negative (no projection) and the other's positive
    grmp = build_model("grmp-iqa", backbone="test-tiny", weights="random").module.to(dtype)
    names, params = zip(*grmp.trainable_parameters().items())
    batch = [TrainItem(it.path, y, it.dataset) for it, y in zip(items, (0.95, 0.9, 0.05, 0.1))]
    local = ctx.shard(batch)
    pixels, targets = _pixels(grmp, local), torch.tensor([it.target for it in local], dtype=dtype)
    info = qgr_step(grmp, pixels, targets, QGR_LAMBDA, params=params,
                    reduce_fn=ctx.reduce_gradients.with_count(len(local)))
    out["global_projection"] = {n: p.grad.clone() for n, p in zip(names, params)}
    out["global_projected"] = info["projected"]
    qgr_step(grmp, pixels, targets, QGR_LAMBDA, params=params)               # this rank's G_qua, G_sem
    own = [p.grad.clone() for p in params]
    out["per_rank_projection"] = dict(zip(names, all_reduce_mean()(own) if ctx.world_size > 1 else own))

    # 4. bi-level meta step (GRMP Eq. 4-6): 3 tasks of (support, query), split 2 + 1 over the ranks
    grmp = build_model("grmp-iqa", backbone="test-tiny", weights="random").module.to(dtype)
    tasks = [((_pixels(grmp, items[i:i + 1]), torch.tensor([items[i].target], dtype=dtype)),
              (_pixels(grmp, items[i + 1:i + 2]), torch.tensor([items[i + 1].target], dtype=dtype)))
             for i in (0, 2, 4)]
    mine = ctx.shard(tasks)
    meta_step(grmp.trainable_parameters(), mine, model_loss_fn(grmp), alpha=0.5, beta=0.5,
              reduce_fn=ctx.reduce_gradients.with_count(len(mine)))
    out["meta"] = _trained(grmp)
    return out


def _worker(rank: int, world: int, init_file: str, folder: str, result_file: str) -> None:
    from pathlib import Path

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        out = _scenarios(DistributedContext(rank=rank, world_size=world, local_rank=rank), Path(folder))
        if rank == 0:
            torch.save(out, result_file)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp_images")
    single = _scenarios(DistributedContext(), folder)
    exact = _scenarios(DistributedContext(), folder, dtype=torch.float64)
    result_file = folder / "two_ranks.pt"
    torch.multiprocessing.spawn(_worker, args=(WORLD, str(folder / "init"), str(folder), str(result_file)),
                                nprocs=WORLD, join=True)
    return single, torch.load(result_file, weights_only=False), exact


def _assert_close(runs, key: str) -> None:
    """The two-rank fp32 result is as close to the fp64 result as the one-process fp32 result is."""
    single, ranks, exact = runs
    assert_as_accurate(ranks[key], single[key], exact[key], reduction_length=REDUCTION_LENGTH, what=key)


def _relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], only: str = "") -> float:
    names = [n for n in b if only in n]
    flat_a = torch.cat([a[n].reshape(-1) for n in names])
    flat_b = torch.cat([b[n].reshape(-1) for n in names])
    return float((flat_a - flat_b).norm() / flat_b.norm())


def test_standard_step_two_ranks_equal_one_process(runs):
    single, ranks, exact = runs
    _assert_close(runs, "gamma")
    assert ranks["gamma_images"] == single["gamma_images"] == [N_ITEMS, N_ITEMS]   # counts summed over ranks
    _assert_close(runs, "gamma_losses")
    # sharded evaluation, gathered: every item scored once, the same scores
    assert not np.isnan(ranks["gamma_predictions"]).any()
    _assert_close(runs, "gamma_predictions")


def test_qgr_step_two_ranks_equal_one_process(runs):
    single, ranks, exact = runs
    assert ranks["qgr_projected"] == single["qgr_projected"] == exact["qgr_projected"]
    assert any(single["qgr_projected"]), "the data should make QGR project at least once"
    _assert_close(runs, "qgr")


def test_qgr_must_project_the_global_gradients_not_each_ranks(runs):
    single, ranks, exact = runs
    assert single["global_projected"] and ranks["global_projected"]
    _assert_close(runs, "global_projection")      # one process: its projection of the whole batch
    # G_sem (Eq. 7, fixed semantic prompts) reaches only the visual prompts, so that is where a projection
    # of the wrong vectors shows (10^5 times the rounding error); the text context's gradient is G_qua's
    # either way
    reference = exact["global_projection"]
    assert _relative_difference(ranks["per_rank_projection"], reference, only="visual_prompts") > 0.1
    with pytest.raises(AssertionError, match="visual_prompts"):
        assert_as_accurate(ranks["per_rank_projection"], single["global_projection"], reference,
                           reduction_length=REDUCTION_LENGTH)


def test_meta_step_averages_over_every_ranks_tasks(runs):
    single, ranks, exact = runs
    _assert_close(runs, "meta")
    moved = max(float((single["meta"][k] - v).abs().max()) for k, v in
                build_model("grmp-iqa", backbone="test-tiny", weights="random").module.trainable_state_dict().items())
    assert moved > 1e-4                                 # the step did something to compare


def test_global_batch_sampler_shards_are_the_single_process_batches():
    one = GlobalBatchSampler(15, 4, seed=3)
    one.set_epoch(2)
    ranks = [GlobalBatchSampler(15, 4, rank=r, world_size=2, seed=3) for r in range(2)]
    for sampler in ranks:
        sampler.set_epoch(2)
    assert [s.local_batch_size for s in ranks] == [2, 2]
    per_rank = [list(s) for s in ranks]
    assert [len(s) for s in ranks] == [len(p) for p in per_rank] == [8, 7]
    single_batches = one.global_batches()
    for step, batch in enumerate(single_batches):      # rank 0's slice followed by rank 1's = the batch
        take = [2, 2] if len(batch) == 4 else [2, 1]
        assert per_rank[0][2 * step:2 * step + take[0]] + per_rank[1][2 * step:2 * step + take[1]] == batch
    assert sorted(i for b in single_batches for i in b) == list(range(15))
    one.set_epoch(3)
    assert one.global_batches() != single_batches      # reshuffled each epoch


def test_sampler_errors_and_a_too_short_last_batch():
    with pytest.raises(ValueError, match="divisible by the 4 processes"):
        GlobalBatchSampler(10, 6, rank=0, world_size=4)
    # 9 items, global batch 8, 2 ranks: the last global batch (1 image) cannot feed both ranks: dropped
    assert [len(GlobalBatchSampler(9, 8, rank=r, world_size=2)) for r in range(2)] == [4, 4]
    assert len(GlobalBatchSampler(9, 8)) == 9                   # one process drops nothing
    assert [shard_bounds(5, 2, r) for r in range(2)] == [(0, 3), (3, 5)]


def test_weighted_gradient_mean_in_one_process():
    grads = [torch.tensor([2.0, 4.0]), torch.tensor([[1.0]])]
    assert [g.tolist() for g in GlobalGradientMean().with_count(3)(grads)] == [[2.0, 4.0], [[1.0]]]
    empty = GlobalGradientMean().with_count(0)
    assert [g.tolist() for g in empty(grads)] == [[0.0, 0.0], [[0.0]]] and empty.last_total == 0
