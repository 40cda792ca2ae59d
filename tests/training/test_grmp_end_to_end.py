"""GRMP-IQA end to end through the commands: `meta-train` on a synthetic-distortion dataset, then 50-shot
`finetune` (QGR, lambda 5) on a dataset of other references; the meta-learned start must reach a held-out
SRCC above a bar and beat the same fine-tuning from randomly initialised prompts on the same splits.

Learnability (docs/grmp.md, "End-to-end test"): the backbone is the built-in quality-aware tiny CLIP
(`perceptiq-tiny-v1`, the first built-in model), whose image features carry distortion strength; on a random test-tiny, meta-training
found the quality direction for one seed in four only. Two monotone distortion types (``darken``,
``contrast_change``), 12 references to meta-train on, 16 other references to fine-tune and test on
(split by reference). Meta-training sits on a plateau (p(high) ~ 0.5) for 40-100 outer steps before the
visual prompts find the quality direction, hence 24 epochs of 6 steps with the recipe's decay.
Measured on the shipped weights (seeds 0, 1, 3): 50-shot SRCC from the meta start 0.79-0.92 per split
(medians 0.80, 0.87, 0.91), from random prompts -0.18 to 0.25; the bar 0.75 sits below every measured
split. Seed 2 stays on the plateau (documented); PERCEPTIQ_E2E_SEED=N reruns the calibration.
"""
from __future__ import annotations

import json
import os
import re

import pytest
import torch
import typer
from typer.testing import CliRunner

from perceptiq.cli.grmp import finetune_command, meta_train_command

from ..conftest import textured_image

TYPES = "darken,contrast_change"
SRCC_BAR = 0.75
SEED = int(os.environ.get("PERCEPTIQ_E2E_SEED", "0"))   # seeds the task split, the meta-batches and the few-shot splits


def tiny_overrides():
    """The quality-aware built-in tiny CLIP (2 text blocks, hence prompts+last2 for fine-tuning)."""
    from perceptiq.models.builtin import builtin_backbone_weights

    # the first built-in model's backbone: this test's bar and seeds were calibrated on it (the current
    # perceptiq-tiny is a hybrid with another feature geometry; docs/builtin-model.md). Eight visual prompt
    # tokens per block, not the recipes' one (section 3.2): with one, meta-training of this tiny model stays
    # on its plateau (seed 0: 50-shot SRCC -0.47 / -0.27 / 0.11 from the meta start; docs/grmp.md).
    return ["model.backbone=perceptiq-tiny-v1", f"model.weights={builtin_backbone_weights(name='perceptiq-tiny-v1')}",
            "model.options.n_visual_tokens=8"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """test-tiny is so small that two threads' synchronisation costs more than it saves on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def app():
    cli = typer.Typer()
    cli.command("meta-train")(meta_train_command)
    cli.command("finetune")(finetune_command)
    return cli


def _synthetic(folder, seeds):
    from perceptiq.data import synthesize

    sources = folder / "sources"
    sources.mkdir(parents=True)
    for seed in seeds:
        textured_image(seed, (96, 80)).save(sources / f"s{seed}.png")
    return synthesize(sources, folder / "data", types=TYPES.split(","), seed=0)


def _invoke(app, args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _median_srcc(run_dir):
    rows = [row for row in csv_rows(run_dir / "results.csv") if row["row"] == "split"]
    srcc = [float(r["srcc"]) for r in rows]
    return sorted(srcc)[len(srcc) // 2], srcc


def csv_rows(path):
    import csv

    with open(path) as handle:
        yield from csv.DictReader(handle)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, app):
    root = tmp_path_factory.mktemp("e2e")
    pretrain = _synthetic(root / "pretrain", range(0, 12))            # references 0-11
    target = _synthetic(root / "target", range(100, 116))              # 16 other references, 160 images
    _invoke(app, ["meta-train", "--data", f"csv={pretrain}", "--output", str(root / "meta"), "--no-progress",
                  "--device", "cpu", *sum((["--set", s] for s in tiny_overrides() + [
                      f"meta.seed={SEED}", "protocol.datasets=[csv]", "meta.epochs=24", "meta.beta=0.05",
                      "meta.tasks_per_step=2", "meta.support_batch=8", "meta.query_batch=8",
                      "meta.workers=0", "meta.precision=fp32", "meta.test_view=resize"]), [])])
    finetune = ["finetune", "--data", f"csv={target}", "--shots", "50", "--splits", "3", "--lam", "5",
                "--no-progress", "--device", "cpu",
                *sum((["--set", s] for s in tiny_overrides() + [
                    "model.trainable=prompts+last2", f"protocol.split.base_seed={SEED}",
                    "protocol.datasets=[csv]", "protocol.split.mode=by_reference", "train.epochs=4",
                    "train.batch_size=16", "train.lr=0.0002", "train.workers=0", "train.precision=fp32",
                    "train.eval_batch_size=64",
                    "train.test_view=resize"]), [])]   # the bar was set under the resize view (crops cost 10x)
    _invoke(app, finetune + ["--init", str(root / "meta" / "model.safetensors"), "--output", str(root / "from-meta")])
    _invoke(app, finetune + ["--set", "model.init=null", "--output", str(root / "from-random")])
    return root


def test_meta_training_wrote_a_checkpoint_and_lowered_the_query_loss(runs):
    epochs = [json.loads(line) for line in (runs / "meta" / "epochs.jsonl").read_text().splitlines()]
    assert epochs[-1]["query_loss"] < epochs[0]["query_loss"]
    config = json.loads((runs / "meta" / "model.json").read_text())
    assert config["tasks"] == ["csv/darken", "csv/contrast_change"]


def test_fifty_shots_from_the_meta_prompts_beat_random_prompts_on_the_same_splits(runs):
    meta_median, meta_all = _median_srcc(runs / "from-meta")
    random_median, random_all = _median_srcc(runs / "from-random")
    assert len(meta_all) == len(random_all) == 3
    # The same three held-out test parts (same split seeds and fingerprints) for both starts.
    assert json.loads((runs / "from-meta" / "splits.json").read_text()) == \
        json.loads((runs / "from-random" / "splits.json").read_text())
    print(f"\nseed {SEED}: from meta {meta_all}, from random {random_all}")
    assert meta_median > SRCC_BAR, (meta_all, random_all)
    assert meta_median > random_median + 0.3, (meta_all, random_all)


def test_qgr_runs_log_the_angle_and_write_both_figures(runs):
    run_dirs = [p for p in (runs / "from-meta").iterdir() if p.is_dir()]
    assert len(run_dirs) == 3
    for run_dir in run_dirs:
        steps = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
        assert steps and all(0 <= s["angle_deg"] <= 180 for s in steps)
        assert any(s["projected"] for s in steps) or all(s["dot"] <= 0 for s in steps)
        for name in ("srcc_per_epoch.png", "gradient_angle.png"):
            assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (runs / "from-meta" / "gradient_angle.png").is_file()       # all runs together
    assert re.search(r"seed", " ".join(p.name for p in run_dirs))
