"""End-to-end: Gamma's mixed training on generated data that imitates mixed-dataset bias.

Three "datasets" of the *same kind* of images (random blocky textures with a random brightness b and a
random warm/cool colour cast c, drawn from one distribution) are labelled by raters who disagree:

    bright  MOS 1..5 (natural scene)       quality = b        brighter is better, labels use 2.0..4.5
    dark    DMOS 0..100 (underwater scene) quality = 1 - b    darker is better, DMOS 10..60 (flipped on load)
    warm    MOS 0..1 (face scene)          quality = c        warm cast is better, brightness ignored

so the MOS scales differ (after normalisation the targets occupy 0.25-0.875, 0.4-0.9 and 0.05-0.45) and
the criteria conflict outright: the same image is good in one dataset and bad in another. Nothing in the
pixels says which dataset an image comes from; only its dataset's scene prompt does (SDP, Table 11).

A model without MoAE and with naive prompts (n_layers=0: one adapter + C for every dataset) cannot serve
"bright" and "dark" at once. Gamma with SDP can: the text-side MoAE turns each dataset's prompt set into
its own trained read-out of the shared image feature (visual MoAE and adapter learn the feature itself).
The scene prompts alone already separate the datasets, so a second control keeps everything of Gamma+SDP
but disables the MoAE (sigma frozen at 0, ``train_sigma=false``: the experts never contribute nor learn):
the full model must beat it, i.e. the MoAE must add something the prompts do not.

Learnability on a randomly initialised test-tiny CLIP (docs: training notes): brightness and colour cast
move every patch embedding linearly, so they are strong directions even in random features; the learning
rate is 3e-3 (tiny model, 12 epochs, constant) instead of the paper's 2e-5; 2 of test-tiny's 4 blocks per
tower hold MoAE. One thread: on a loaded 2-core machine two torch threads spin against each other.

The bars below were set from ten seeds, 0-9 (docs/gamma.md, "End-to-end experiment"; AMD EPYC AVX512-BF16):
Gamma+SDP reached mean SRCC 0.81-0.97 over the three datasets (worst single dataset 0.59), the baseline
-0.16-0.40 (smallest margin 0.52), the MoAE-disabled control 0.78-0.90. Gamma+SDP beat the control in 9 of
10 seeds by 0.055-0.141, and lost in one (seed 7: -0.035). So the control margin is a regression check
on the pinned seed 0 (margin 0.065; bar 0.03), not a claim that MoAE wins on every draw of this data;
a reliable claim would need the mean over several seeds, too slow for this test (about 40 s per seed).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from perceptiq.data import load_generic_csv
from perceptiq.recipes import load_recipe, resolve_variant
from perceptiq.training.experiment import run_experiment

MEAN_SRCC_BAR = 0.7         # Gamma + SDP, mean over the three datasets' held-out SRCC (seeds 0-9: >= 0.81)
DATASET_SRCC_BAR = 0.5      # every dataset (seeds 0-9: >= 0.59)
MARGIN_OVER_BASELINE = 0.3  # Gamma + SDP minus (n_layers=0, naive prompts) (seeds 0-9: >= 0.52)
MARGIN_OVER_CONTROL = 0.03  # Gamma + SDP minus the same with sigma frozen at 0 (seed 0: 0.065; see above)

# name: (scene, label range, DMOS?, label = low + span * quality, quality from (b, c))
BIASED_DATASETS = {
    "bright": ("natural", (1.0, 5.0), False, (2.0, 2.5), lambda b, c: b),
    "dark": ("underwater", (0.0, 100.0), True, (10.0, 50.0), lambda b, c: 1.0 - b),
    "warm": ("face", (0.0, 1.0), False, (0.05, 0.4), lambda b, c: c),
}
IMAGES_PER_DATASET = 60
LABEL_NOISE = 0.03          # std of rater noise on the quality in [0, 1]


def textured_image(rng: np.random.Generator, brightness: float, warmth: float) -> Image.Image:
    """A 32x32 blocky random texture with a global brightness and a warm (c=1) / cool (c=0) cast."""
    texture = np.kron(rng.uniform(0.0, 1.0, size=(8, 8, 1)), np.ones((4, 4, 1)))
    grey = 0.15 + 0.7 * brightness + 0.25 * (texture - 0.5)
    cast = np.array([1.0 + 0.5 * warmth, 1.0, 1.5 - 0.5 * warmth]) / 1.25
    return Image.fromarray((np.clip(grey * cast, 0.0, 1.0) * 255).astype(np.uint8))


def write_biased_datasets(root: Path, seed: int) -> dict:
    """The three datasets as generic CSV files under ``root``; returns them loaded (LabeledDataset)."""
    datasets = {}
    for offset, (name, (scene, scale, is_dmos, (low, span), rule)) in enumerate(BIASED_DATASETS.items()):
        rng = np.random.default_rng([seed, offset])
        folder = root / name
        folder.mkdir(parents=True)
        rows = []
        for i in range(IMAGES_PER_DATASET):
            b, c = rng.uniform(0.0, 1.0, size=2)
            textured_image(rng, b, c).save(folder / f"{i:03d}.png")
            quality = float(np.clip(rule(b, c) + rng.normal(0.0, LABEL_NOISE), 0.0, 1.0))
            label = low + span * (1.0 - quality if is_dmos else quality)
            rows.append([f"{i:03d}.png", f"{label:.4f}"])
        with open(folder / "labels.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "score"])
            writer.writerows(rows)
        datasets[name] = load_generic_csv(folder / "labels.csv", name=name, score_range=scale,
                                          higher_is_better=not is_dmos, scene=scene)
    return datasets


def tiny_overrides(seed: int) -> list[str]:
    """The paper's recipe, shrunk to test-tiny, three generated datasets, one split and a few minutes."""
    return [
        "model.backbone=test-tiny", "model.weights=random", "model.options.n_layers=2",
        f"model.options.seed={seed}",
        f"protocol.datasets=[{','.join(BIASED_DATASETS)}]",
        "protocol.split.n_splits=1", "protocol.split.train_fraction=0.7", f"protocol.split.base_seed={seed}",
        "train.epochs=12", "train.lr=0.003", "train.scheduler=constant",  # the bars were set at a constant rate
        "train.workers=0", "train.eval_every=12", f"train.seed={seed}",
        "train.test_view=resize",   # the bars were set under the resize view (10 crops cost 10x here)
    ]


def run_gamma_and_baseline(tmp_path: Path, seed: int) -> dict:
    """Mixed training of Gamma+SDP, of the MoAE-disabled control and of the baseline on the same data and
    split; per-dataset SRCC and per-epoch losses."""
    datasets = write_biased_datasets(tmp_path / "data", seed)
    gamma = load_recipe("gamma-mixed-sdp", tiny_overrides(seed))
    control = load_recipe("gamma-mixed-sdp", tiny_overrides(seed) + ["model.options.train_sigma=false"])
    baseline = resolve_variant(load_recipe("gamma-mixed", tiny_overrides(seed)), "layers-0")
    outcome = {}
    for label, recipe in (("gamma_sdp", gamma), ("control", control), ("baseline", baseline)):
        result = run_experiment(recipe, {}, tmp_path / label, datasets=datasets)
        epochs = [json.loads(line) for line in (result.run_dirs[0] / "epochs.jsonl").read_text().splitlines()]
        outcome[label] = {
            "srcc": {row.dataset: row.metrics["srcc"] for row in result.result.rows},
            "losses": [e["train_loss"] for e in epochs],
        }
    return outcome


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_gamma_with_moae_and_scene_prompts_learns_conflicting_datasets_the_baseline_cannot(tmp_path, one_thread):
    outcome = run_gamma_and_baseline(tmp_path, seed=0)
    gamma, control, baseline = outcome["gamma_sdp"], outcome["control"], outcome["baseline"]
    assert set(gamma["srcc"]) == set(control["srcc"]) == set(BIASED_DATASETS)
    # the loss falls: last epoch well under the first
    assert gamma["losses"][-1] < 0.6 * gamma["losses"][0], gamma["losses"]
    mean = {label: float(np.mean(list(run["srcc"].values()))) for label, run in outcome.items()}
    print(f"\nseed 0: {[(label, run['srcc']) for label, run in outcome.items()]}")
    assert mean["gamma_sdp"] > MEAN_SRCC_BAR, gamma["srcc"]
    assert min(gamma["srcc"].values()) > DATASET_SRCC_BAR, gamma["srcc"]   # every dataset learnt, not two of three
    assert mean["gamma_sdp"] - mean["baseline"] > MARGIN_OVER_BASELINE, (gamma["srcc"], baseline["srcc"])
    # the MoAE adds to what the scene prompts give: the same model with sigma frozen at 0 does worse
    assert mean["gamma_sdp"] - mean["control"] > MARGIN_OVER_CONTROL, (gamma["srcc"], control["srcc"])
