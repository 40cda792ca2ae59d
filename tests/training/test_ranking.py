"""The ranking objective, grouped batches in the one Trainer, and the built-in model's crop bank."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from perceptiq.training.objectives import bce_rank_loss, get_loss, pairwise_ranking_loss


def test_pairwise_ranking_loss_by_hand():
    p = torch.tensor([0.8, 0.6, 0.3, 0.5])
    targets = torch.tensor([1.0, 0.6, 0.2, 0.0])
    groups = torch.tensor([0, 0, 0, 1])      # the last item has no partner
    z = [math.log(v / (1 - v)) for v in (0.8, 0.6, 0.3)]
    softplus = lambda x: math.log1p(math.exp(x))
    expected = (softplus(-(z[0] - z[1])) + softplus(-(z[0] - z[2])) + softplus(-(z[1] - z[2]))) / 3
    assert pairwise_ranking_loss(p, targets, groups).item() == pytest.approx(expected, rel=1e-5)
    # a wrong order costs more than the right one
    assert pairwise_ranking_loss(p.flip(0), targets, groups) > pairwise_ranking_loss(p, targets, groups)
    # no pairs: zero, with a gradient path
    lone = torch.tensor([0.4, 0.7], requires_grad=True)
    loss = pairwise_ranking_loss(lone, torch.tensor([1.0, 0.0]), torch.tensor([0, 1]))
    loss.backward()
    assert loss.item() == 0.0 and lone.grad is not None
    bce = torch.nn.functional.binary_cross_entropy(p, targets)
    full = bce_rank_loss(p, targets, groups, rank_weight=0.5)
    assert full.item() == pytest.approx(bce.item() + 0.5 * expected, rel=1e-5)
    assert get_loss("bce+rank") is bce_rank_loss


def _photo(tmp_path: Path, name: str, seed: int, size=(300, 260)) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    # smooth structure plus texture, like a photograph (a flat image would leave crops unchanged)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    base = 0.5 + 0.3 * np.sin(x / (7 + seed)) * np.cos(y / 11)
    img = np.clip(base[..., None] + 0.1 * rng.standard_normal((size[1], size[0], 3)), 0, 1)
    path = tmp_path / f"{name}.png"
    Image.fromarray((img * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def small_bank(tmp_path_factory):
    from perceptiq.training.builtin.crop_bank import CropBankSpec, build_crop_bank

    folder = tmp_path_factory.mktemp("bank")
    photos = [_photo(folder, f"p{i}", i) for i in range(3)]
    spec = CropBankSpec(seed=0, rounds=2, crops_per_round=2, long_side=(240, 280),
                        types=("gaussian_blur", "white_noise", "jpeg", "brighten"))
    return build_crop_bank(photos, folder / "bank", spec, workers=1), photos, spec


def test_crop_bank_groups_hold_one_position_in_every_version(small_bank):
    bank, photos, spec = small_bank
    assert bank.crops.shape == (3 * 2 * 2, 7, 224, 224, 3) and bank.crops.dtype == np.uint8
    assert sorted(set(bank.meta["photo"].tolist())) == [0, 1, 2]
    for g in range(len(bank)):
        a, b = bank.types[bank.meta["type_a"][g]], bank.types[bank.meta["type_b"][g]]
        assert a != b
        levels = bank.version_levels(g)
        assert levels[:6].tolist() == [0, 1, 2, 3, 4, 5] and 1 <= levels[6] <= 5
        crops = bank.crops[g].astype(np.int16)
        # the versions are the same content: close to the pristine crop on average, and changed
        for v in range(1, 7):
            if bank.meta["changed"][g][v]:
                assert np.abs(crops[v] - crops[0]).mean() > 0
        blur_or_noise = np.abs(crops[5] - crops[0]).mean()
        assert blur_or_noise > np.abs(crops[1] - crops[0]).mean() or a == "brighten"
    # type A cycles through the types across a photo's rounds
    first = bank.meta["type_a"][bank.meta["photo"] == 0]
    assert len(set(first.tolist())) == 2


def test_crop_bank_resumes_and_refuses_another_spec(small_bank, tmp_path):
    from perceptiq.training.builtin.crop_bank import CropBankSpec, build_crop_bank

    bank, photos, spec = small_bank
    shards = sorted((bank.root / "shards").glob("*.npz"))
    stamps = [s.stat().st_mtime_ns for s in shards]
    (bank.root / "crops.npy").unlink()          # as if stopped before consolidation
    again = build_crop_bank(photos, bank.root, spec, workers=1)
    assert [s.stat().st_mtime_ns for s in shards] == stamps     # no shard was made twice
    np.testing.assert_array_equal(again.crops[3], bank.crops[3])
    with pytest.raises(ValueError, match="another spec or photo list"):
        build_crop_bank(photos, bank.root, CropBankSpec(seed=1, rounds=2, crops_per_round=2), workers=1)


def test_crop_bank_records_an_unreadable_photo_and_goes_on(tmp_path):
    from perceptiq.training.builtin.crop_bank import CropBankSpec, build_crop_bank

    good = _photo(tmp_path, "good", 0)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    spec = CropBankSpec(rounds=1, crops_per_round=1, long_side=(240, 240), types=("jpeg", "brighten"))
    bank = build_crop_bank([good, bad], tmp_path / "bank", spec, workers=1)
    assert len(bank) == 1
    assert "bad.png" in (tmp_path / "bank" / "failures.txt").read_text()


def test_bank_batches_targets_groups_and_epoch_determinism(small_bank):
    from perceptiq.training.builtin.bank_batches import BankBatches

    bank, _, _ = small_bank
    mean, std = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
    batches = BankBatches(bank, np.arange(len(bank)), mean=mean, std=std, groups_per_step=3, steps_per_epoch=2)
    first = list(batches)
    assert len(first) == 2
    batch = first[0]
    assert batch.pixels.shape == (21, 3, 224, 224) and batch.groups.tolist() == [0] * 7 + [1] * 7 + [2] * 7
    for g in range(3):
        t = batch.targets[7 * g:7 * g + 7]
        assert t[0] == 1.0 and torch.all(t[1:6] <= 1.0) and torch.all(t[1:6][:-1] >= t[1:6][1:])
    again = list(batches)
    torch.testing.assert_close(again[1].pixels, first[1].pixels)
    batches.set_epoch(1)
    assert not torch.equal(list(batches)[0].pixels, first[0].pixels)
    # pixels are the bank's crops normalised with mean/std (up to a flip)
    g0 = batch.pixels[0] * torch.tensor(std).view(3, 1, 1) * 255 + torch.tensor(mean).view(3, 1, 1) * 255
    assert g0.min() > -0.5 and g0.max() < 255.5


def test_unchanged_versions_are_labelled_pristine(small_bank):
    from perceptiq.training.builtin.bank_batches import BankBatches

    bank, _, _ = small_bank
    batches = BankBatches(bank, np.arange(len(bank)), mean=(0.5,) * 3, std=(0.5,) * 3,
                          groups_per_step=1, steps_per_epoch=1)
    saved = bank.meta["changed"][0].copy()
    try:
        bank.meta["changed"][0][2] = False
        assert batches.targets_of(0)[2] == 1.0 and batches.targets_of(0)[3] == pytest.approx(1 - 3 / 5)
    finally:
        bank.meta["changed"][0][:] = saved


def test_trainer_ranks_versions_with_a_grouped_loader(small_bank):
    """The one Trainer takes a grouped loader; the ranking objective learns the within-image order."""
    from perceptiq.models import build_model
    from perceptiq.training.builtin.bank_batches import BankBatches
    from perceptiq.training.config import TrainConfig
    from perceptiq.training.trainer import Trainer

    bank, _, _ = small_bank
    torch.manual_seed(0)
    model = build_model("grmp-iqa", backbone="test-tiny", weights="random", n_visual_tokens=0).module
    model.set_trainable("encoders")
    info = model.backbone.info
    loader = BankBatches(bank, np.arange(len(bank)), mean=info.mean, std=info.std, groups_per_step=2,
                         steps_per_epoch=3, seed=0)
    config = TrainConfig(epochs=2, optimizer="adamw", lr=1e-3, loss="bce+rank", batch_size=14)
    seen = []
    original = loader.set_epoch
    loader.set_epoch = lambda e: (seen.append(e), original(e))
    result = Trainer(config).fit(model, [], None, train_loader=loader)
    assert seen == [0, 1] and len(result.steps) == 6
    assert all(np.isfinite(s["loss"]) for s in result.steps)
    with pytest.raises(ValueError, match="group ids"):
        from perceptiq.training.data import Batch

        trainer = Trainer(config)
        b = next(iter(loader))
        b.groups = None
        trainer.fit(model, [], None, train_loader=[b])


def test_vivid_rounds_distort_a_chroma_scaled_pristine_photograph(tmp_path):
    """``pristine_chroma_fraction``: a vivid round's pristine version is the photograph with its chroma
    scaled, and its distortions start from that vivid photograph; without the option nothing changes."""
    from PIL import Image

    from perceptiq.data.synthetic import get_distortion
    from perceptiq.data.synthetic.colour import from_uint8, to_uint8
    from perceptiq.data.synthetic.distortions.chromatic import scale_chroma
    from perceptiq.training.builtin.crop_bank import CropBankSpec, make_photo_groups

    # 224 x 224 with a 240 long side: no rescale and one crop position, so the crops are whole images
    img = from_uint8(np.asarray(Image.open(_photo(tmp_path, "p", 0, size=(224, 224))).convert("RGB")))
    common = dict(rounds=2, crops_per_round=1, long_side=(240, 240), types=("brighten", "darken"))
    plain = make_photo_groups(img, 0, CropBankSpec(**common))
    vivid = make_photo_groups(img, 0, CropBankSpec(**common, pristine_chroma_fraction=1.0,
                                                   pristine_chroma_gain=(1.5, 1.5)))
    vivid_img = scale_chroma(img, 1.5)
    assert not np.array_equal(to_uint8(vivid_img), to_uint8(img))
    for g in range(2):
        assert np.array_equal(plain["crops"][g, 0], to_uint8(img))
        assert np.array_equal(vivid["crops"][g, 0], to_uint8(vivid_img))
        kind = common["types"][vivid["type_a"][g]]
        for level in range(1, 6):       # brighten and darken draw nothing from their generator
            expected = get_distortion(kind)(vivid_img, level, np.random.default_rng(0))
            assert np.array_equal(vivid["crops"][g, level], to_uint8(expected))


def test_vivid_option_is_checked_and_leaves_the_shipped_bank_fingerprint_alone():
    from importlib import resources

    from perceptiq.recipes import load_recipe
    from perceptiq.training.builtin.crop_bank import CropBankSpec
    from perceptiq.training.builtin.ranked import bank_spec

    with pytest.raises(ValueError, match="pristine_chroma_fraction must be in"):
        CropBankSpec(pristine_chroma_fraction=1.5)
    with pytest.raises(ValueError, match="pristine_chroma_gain must be"):
        CropBankSpec(pristine_chroma_fraction=0.5, pristine_chroma_gain=(0.8, 1.2))
    # vivid rounds with a gain of exactly 1 would silently be plain rounds
    with pytest.raises(ValueError, match="leaves every photograph unchanged"):
        CropBankSpec(pristine_chroma_fraction=0.5)

    shipped = json.loads(resources.files("perceptiq").joinpath("weights", "perceptiq-tiny.json").read_text())
    spec = bank_spec(load_recipe("perceptiq-tiny"))
    assert spec.fingerprint(shipped["photos"]) == shipped["bank_fingerprint"]
    assert (spec.pristine_chroma_fraction, spec.pristine_chroma_gain) == (0.5, (1.0, 1.6))
    # without the options the bank is the one the first rebuild trained on, under its old fingerprint
    plain = bank_spec(load_recipe("perceptiq-tiny", ["protocol.bank.pristine_chroma_fraction=0",
                                                     "protocol.bank.pristine_chroma_gain=[1.0, 1.0]",
                                                     "protocol.bank.crop_candidates=1"]))
    assert plain.fingerprint(shipped["photos"]) == "97309356be39e485"
    assert CropBankSpec().fingerprint(shipped["photos"]) != shipped["bank_fingerprint"]


def test_crop_detail_is_the_mean_absolute_laplacian_of_the_window():
    from perceptiq.training.builtin.crop_bank import crop_detail, laplacian_detail_map

    rgb = np.random.default_rng(3).integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    table = laplacian_detail_map(rgb)
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    for y, x, size in [(0, 0, 10), (5, 7, 20), (20, 30, 20), (0, 0, 40)]:
        expected = 0.0
        for i in range(y, y + size):           # the definition, pixel by pixel (border pixels count 0)
            for j in range(x, x + size):
                if 0 < i < 39 and 0 < j < 49:
                    expected += abs(4 * luma[i, j] - luma[i - 1, j] - luma[i + 1, j] - luma[i, j - 1] - luma[i, j + 1])
        # a difference of cumulative sums of values <= 4 * 255 over 2,000 pixels: fp64 rounding only
        assert crop_detail(table, y, x, size) == pytest.approx(expected / size**2, rel=1e-9)


def test_detail_seeking_crops_avoid_a_flat_half_and_keep_the_plain_bank():
    """``crop_candidates``: positions move towards detail (each is the most detailed of k draws), every
    version is still cut at its group's one position, and 1 is the plain bank (same fingerprint)."""
    from perceptiq.data.synthetic.colour import from_uint8
    from perceptiq.training.builtin.crop_bank import (CropBankSpec, crop_detail, laplacian_detail_map,
                                                      make_photo_groups)

    # 300 x 600: the left half flat grey, the right half noise; no rescale at a 600 long side
    rgb = np.full((300, 600, 3), 128, np.uint8)
    rgb[:, 300:] = np.random.default_rng(0).integers(0, 256, size=(300, 300, 3), dtype=np.uint8)
    common = dict(rounds=4, crops_per_round=8, long_side=(600, 600), types=("brighten", "darken"))

    def mean_detail(k):
        groups = make_photo_groups(from_uint8(rgb), 0, CropBankSpec(**common, crop_candidates=k))
        pristine = groups["crops"][:, 0]
        # brighten/darken act on the whole image, so every version's crop sits where the pristine one does
        assert pristine.shape == (32, 224, 224, 3)
        return np.mean([crop_detail(laplacian_detail_map(c), 0, 0, 224) for c in pristine])

    # one draw overlaps the noisy half by ~112 of 224 columns on average, the best of 4 by ~215
    assert mean_detail(4) > 1.5 * mean_detail(1)

    with pytest.raises(ValueError, match="crop_candidates must be a whole number >= 1"):
        CropBankSpec(crop_candidates=0)
    with pytest.raises(ValueError, match="crop_candidates must be a whole number >= 1"):
        CropBankSpec(crop_candidates=2.5)
    photos = ["a.png"]
    assert CropBankSpec(crop_candidates=1).fingerprint(photos) == CropBankSpec().fingerprint(photos)
    assert CropBankSpec(crop_candidates=2).fingerprint(photos) != CropBankSpec().fingerprint(photos)
