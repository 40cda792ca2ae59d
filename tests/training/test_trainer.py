"""The one trainer: schedules, transforms, the loop (only trainable parameters move, loss falls, bad images
are skipped, runs repeat exactly), and checkpoints that load back."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perceptiq.inference.images import clip_preprocess, load_rgb
from perceptiq.models import build_model, save_checkpoint
from perceptiq.training import TrainConfig, Trainer, TrainItem
from perceptiq.training.transforms import ImageTransform

from ..conftest import textured_image

GAMMA_TINY = {"n_layers": 2, "n_experts": 2}


def test_schedules():
    constant = TrainConfig(lr=0.1)
    assert [constant.lr_at(e) for e in range(3)] == [0.1, 0.1, 0.1]
    coop = TrainConfig(epochs=5, lr=0.002, scheduler="cosine", warmup_epochs=1, warmup_lr=1e-5)
    assert coop.lr_at(0) == 1e-5 and coop.lr_at(1) == pytest.approx(0.002)
    assert coop.lr_at(3) == pytest.approx(0.5 * 0.002 * (1 + math.cos(math.pi * 2 / 4)))
    step = TrainConfig(lr=1.0, scheduler="step", step_every=2, step_gamma=0.9)
    assert [round(step.lr_at(e), 4) for e in range(5)] == [1.0, 1.0, 0.9, 0.9, 0.81]


def test_config_errors_are_named():
    with pytest.raises(ValueError, match="'epoch'. Did you mean 'epochs'"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="train.optimizer"):
        TrainConfig(optimizer="lion")


def test_eval_transform_equals_the_scorer_preprocessing(tmp_path):
    path = tmp_path / "a.jpg"
    textured_image(3, (300, 200)).save(path)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    evaluate = ImageTransform(mean, std, resize=224, crop=224, train=False)
    assert torch.allclose(evaluate(str(path)), clip_preprocess(load_rgb(path), size=224, mean=mean, std=std),
                          atol=1e-6)
    train = ImageTransform(mean, std, resize=224, crop=224, train=True)
    assert train(str(path)).shape == (3, 224, 224)


@pytest.fixture
def items(tmp_path):
    """16 images whose target is their mean brightness (a signal even a random CLIP carries)."""
    out = []
    for i in range(16):
        gain = 0.3 + 0.05 * i
        array = np.clip(np.asarray(textured_image(i, (64, 64)), dtype=np.float64) * gain, 0, 255).astype(np.uint8)
        path = tmp_path / f"im{i}.png"
        from PIL import Image

        Image.fromarray(array).save(path)
        out.append(TrainItem(str(path), float(array.mean() / 255), "toy"))
    return out


def _gamma():
    return build_model("gamma", backbone="test-tiny", weights="random", **GAMMA_TINY)


def test_only_trainable_parameters_move_and_loss_falls(items):
    bundle = _gamma()
    model = bundle.module
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = TrainConfig(epochs=6, batch_size=8, lr=1e-2, hflip=False)
    result = Trainer(config).fit(model, items, {"toy": items})
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        if not p.requires_grad:
            assert not changed, f"frozen {name} moved"
        elif "router" not in name:  # routers only get gradient once the experts have diverged (docs/gamma.md)
            assert changed, f"trainable {name} did not move"
    assert set(result.final_metrics) == {"toy"} and "srcc" in result.final_metrics["toy"]
    assert result.final_predictions["toy"].shape == (16,)


def test_runs_repeat_exactly_with_the_same_seed(items):
    config = TrainConfig(epochs=1, batch_size=4, lr=1e-3, seed=7)
    a, b = _gamma().module, _gamma().module
    Trainer(config).fit(a, items[:8])
    Trainer(config).fit(b, items[:8])
    for (name, pa), pb in zip(a.trainable_state_dict().items(), b.trainable_state_dict().values()):
        assert torch.equal(pa, pb), name


def test_a_bad_training_image_is_skipped_not_fatal(items, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    data = items[:6] + [TrainItem(str(broken), 0.5, "toy")]
    result = Trainer(TrainConfig(epochs=1, batch_size=4, lr=1e-3)).fit(_gamma().module, data)
    assert list(result.failures) == [str(broken)] and result.epochs[0].n_images == 6


def test_checkpoint_of_a_trained_model_scores_identically(items, tmp_path):
    bundle = _gamma()
    Trainer(TrainConfig(epochs=1, batch_size=8, lr=1e-2)).fit(bundle.module, items)
    tensors = bundle.module.trainable_state_dict()
    path = save_checkpoint(tmp_path / "run" / "model.safetensors", tensors,
                           {**bundle.config, "trained_parameters": sorted(tensors)})
    loaded = build_model(str(path))
    pixels = torch.stack([clip_preprocess(load_rgb(it.path)) for it in items[:4]])
    with torch.no_grad():
        assert torch.equal(bundle.module(pixels).scores, loaded.module(pixels).scores)


def test_logs_are_written(items, tmp_path):
    Trainer(TrainConfig(epochs=2, batch_size=8, lr=1e-3), out_dir=tmp_path).fit(_gamma().module, items, {"toy": items})
    assert len((tmp_path / "epochs.jsonl").read_text().splitlines()) == 2
    assert len((tmp_path / "steps.jsonl").read_text().splitlines()) == 4


def test_bce_takes_a_target_past_a_nominal_range_at_the_nearest_end():
    """LIVE's realigned DMOS above Table 9's 100 gives a target below 0; BCE cannot take it, so it is
    clamped: by hand, -log(1 - 0.3) = 0.3566749 for target -0.05, and -log(0.8) = 0.2231436 for 1.04."""
    from perceptiq.training.objectives import bce_loss

    p = torch.tensor([0.3, 0.8])
    assert bce_loss(p, torch.tensor([-0.05, 1.04])).item() == pytest.approx((0.3566749 + 0.2231436) / 2, rel=1e-6)
