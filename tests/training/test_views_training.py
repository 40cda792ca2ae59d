"""Training on native crops (issue 12): GRMP's 10 crops per image are 10 different crops, every epoch
draws new ones, per-dataset pre-resize, every recipe names its test view, and a trained checkpoint is
scored by `perceptiq score` under that view exactly as the trainer evaluated it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perceptiq.inference import load_model
from perceptiq.models import build_model, save_checkpoint
from perceptiq.recipes import list_recipes, load_recipe
from perceptiq.training import TrainConfig, Trainer, TrainItem
from perceptiq.training.data import LabeledImageDataset, make_loader
from perceptiq.training.meta_training import MetaTrainingConfig

from ..conftest import textured_image


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    textured_image(5, (512, 384)).save(path)
    return str(path)


def grmp_full_transform():
    recipe = load_recipe("grmp-full")
    config = TrainConfig.from_dict(recipe["train"])
    model = build_model("grmp-iqa", backbone="test-tiny", weights="random").module
    return config, Trainer(config).transforms(model)


def test_grmp_full_takes_ten_distinct_native_crops_per_image(photo):
    config, (train_tf, _) = grmp_full_transform()
    assert config.crops_per_image == 10 and config.train_resize is None
    torch.manual_seed(0)
    dataset = LabeledImageDataset([TrainItem(photo, 0.5, "live")], train_tf, config.crops_per_image)
    crops = [dataset[i][1] for i in range(len(dataset))]
    assert len(crops) == 10 and all(c.shape == (3, 224, 224) for c in crops)
    for i in range(10):
        for j in range(i + 1, 10):
            assert not torch.equal(crops[i], crops[j]), (i, j)


def coordinate_image(width: int = 512, height: int = 384):
    """Pixel (x, y) holds R = x mod 256, G = y mod 256, B = 64 * (x // 256) + (y // 256): every pixel says
    where it is, so a crop's position can be read off its corner."""
    from PIL import Image

    yy, xx = np.mgrid[0:height, 0:width]
    array = np.stack([xx % 256, yy % 256, 64 * (xx // 256) + yy // 256], axis=-1).astype(np.uint8)
    return Image.fromarray(array), array


def test_training_crops_are_windows_of_the_stored_pixels(tmp_path):
    """Native resolution: each crop is a 224 window of the stored pixels (or its mirror), never a
    downscale."""
    from perceptiq.imaging import CLIP_MEAN, CLIP_STD

    image, array = coordinate_image()
    path = tmp_path / "coords.png"
    image.save(path)
    _, (train_tf, _) = grmp_full_transform()
    torch.manual_seed(3)
    for _ in range(6):
        crop = train_tf(str(path), dataset="live").double().permute(1, 2, 0).numpy()
        pixels = np.rint((crop * np.array(CLIP_STD) + np.array(CLIP_MEAN)) * 255).astype(np.int64)
        for candidate in (pixels, pixels[:, ::-1]):
            r, g, b = candidate[0, 0]
            x, y = int(r + 256 * (b // 64)), int(g + 256 * (b % 64))
            window = array[y:y + 224, x:x + 224].astype(np.int64)
            if window.shape == candidate.shape and np.array_equal(window, candidate):
                break
        else:
            raise AssertionError("a training crop is not a window of the stored pixels")


def test_each_epoch_draws_new_crops(photo):
    config, (train_tf, _) = grmp_full_transform()
    loader = make_loader([TrainItem(photo, 0.5, "live")], train_tf, batch_size=10, shuffle=True, seed=0,
                         crops_per_image=10)
    torch.manual_seed(0)
    first, second = next(iter(loader)).pixels, next(iter(loader)).pixels
    assert not any(torch.equal(a, b) for a in first for b in second)


def test_dataset_resize_applies_to_that_dataset_only(photo):
    config = TrainConfig(dataset_resize={"koniq10k": 256}, test_view="crops:2")
    model = build_model("zero-shot", backbone="test-tiny", weights="random").module
    train_tf, eval_tf = Trainer(config).transforms(model)
    assert eval_tf.view_for("koniq10k").pre_resize == 256 and eval_tf.view_for("live").pre_resize is None
    torch.manual_seed(1)
    resized = train_tf(photo, dataset="koniq10k")
    assert resized.shape == (3, 224, 224)
    assert eval_tf(photo, dataset="koniq10k").shape == (2, 3, 224, 224)


def test_every_recipe_names_its_test_view_and_it_parses():
    for name in list_recipes():
        recipe = load_recipe(name)
        section = recipe.get("meta") if "meta" in recipe and "train" not in recipe else recipe.get("train")
        assert section and "test_view" in section, name
        config = (MetaTrainingConfig.from_dict(section) if "train" not in recipe else TrainConfig.from_dict(section))
        assert config.test_view in ("resize", "crops:4", "crops:10,random"), (name, config.test_view)
        assert config.train_resize is None or name == "perceptiq-tiny-v1", name   # v1: trained on resize


def test_a_full_test_view_is_refused_for_training():
    with pytest.raises(ValueError, match="test_view = full"):
        TrainConfig(test_view="full")
    with pytest.raises(ValueError, match="crops needs a count"):
        TrainConfig(test_view="crops")


def test_trainer_evaluation_equals_perceptiq_score_under_the_recipe_view(tmp_path):
    items = []
    for i in range(5):
        path = tmp_path / f"im{i}.png"
        textured_image(30 + i, (300 + 20 * i, 260)).save(path)
        items.append(TrainItem(str(path), 0.2 * i, "toy"))
    config = TrainConfig(epochs=1, batch_size=4, lr=1e-3, test_view="crops:3,random", eval_batch_size=2)
    bundle = build_model("gamma", backbone="test-tiny", weights="random", n_layers=2, n_experts=2)
    trainer = Trainer(config)
    result = trainer.fit(bundle.module, items, {"toy": items})
    tensors = bundle.module.trainable_state_dict()
    path = save_checkpoint(tmp_path / "run" / "model.safetensors", tensors,
                           {**bundle.config, "trained_parameters": sorted(tensors), "view": config.test_view})
    scorer = load_model(str(path), device="cpu", precision="fp32")
    assert scorer.describe()["view"] == "crops:3,random"
    results = scorer.score([it.path for it in items])
    np.testing.assert_allclose(results.scores, result.final_predictions["toy"], atol=1e-6)
    assert all(len(r.crop_scores) == 3 for r in results)
