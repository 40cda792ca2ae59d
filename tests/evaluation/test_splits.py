"""Tests of perceptiq.data.splits: determinism, disjointness, subsets, portability of split files."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from perceptiq.data.splits import (
    BY_REFERENCE,
    K_SHOT,
    RANDOM,
    SUBSET_FRACTION,
    WHOLE_TEST,
    WHOLE_TRAIN,
    Split,
    SplitFileError,
    SplitMismatchError,
    k_shot_split,
    load_splits,
    make_repeated_splits,
    make_split,
    random_split,
    reference_split,
    relative_sample_paths,
    save_splits,
    split_seeds,
    splits_for_datasets,
    subset_fraction_split,
    whole_dataset_split,
)


@dataclass(frozen=True)
class Sample:
    path: Path
    score: float
    ref: str | None = None


def authentic(root: Path, n: int = 50) -> list[Sample]:
    """n images in root/images, no reference ids."""
    return [Sample(root / "images" / f"img_{i:04d}.jpg", score=(i * 37 % n) / n) for i in range(n)]


def synthetic(root: Path, n_refs: int = 10, n_distortions: int = 6) -> list[Sample]:
    """n_refs reference images with n_distortions distorted versions each, in subfolders."""
    return [
        Sample(root / "dist" / f"r{r:02d}" / f"d{d}.bmp", score=((r * 7 + d * 3) % 11) / 10, ref=f"ref{r:02d}")
        for r in range(n_refs)
        for d in range(n_distortions)
    ]


def train_paths(split: Split, samples) -> set[Path]:
    return {sample.path for sample in split.apply(samples).train}


def test_random_split_is_an_80_20_partition(tmp_path):
    samples = authentic(tmp_path, 50)
    split = random_split(samples, "koniq", seed=0)
    assert (len(split.train), len(split.test)) == (40, 10)
    assert set(split.train).isdisjoint(split.test)
    assert set(split.train) | set(split.test) == set(range(50))
    assert split.params == {"train_fraction": 0.8}
    assert (len(random_split(samples, "koniq", 0, train_fraction=0.7).train)) == 35


def test_random_split_is_deterministic_and_depends_on_seed_and_dataset(tmp_path):
    samples = authentic(tmp_path, 50)
    assert random_split(samples, "koniq", 3) == random_split(samples, "koniq", 3)
    assert random_split(samples, "koniq", 3).test != random_split(samples, "koniq", 4).test
    assert random_split(samples, "koniq", 3).test != random_split(samples, "spaq", 3).test


def test_splits_are_pinned_so_old_split_files_stay_reproducible(tmp_path):
    # Frozen output of the hash-based permutation (computed once, when the scheme was written). If
    # this fails, the scheme changed and "the same test part as an earlier run" no longer holds for
    # splits re-made from seeds: keep the old scheme, or bump SPLITS_FILE_VERSION and say so.
    samples = authentic(tmp_path, 10)
    base = random_split(samples, "koniq", seed=0)
    assert base.test == (3, 8)
    assert k_shot_split(base, 3).train == (0, 2, 7)
    assert reference_split(synthetic(tmp_path, 5, 2), "live", seed=0).test == (8, 9)


def test_split_ignores_sample_order_and_machine_root(tmp_path):
    samples = authentic(tmp_path / "machine_a", 50)
    shuffled = authentic(tmp_path / "elsewhere" / "machine_b", 50)
    random.Random(1).shuffle(shuffled)
    a, b = random_split(samples, "koniq", 5), random_split(shuffled, "koniq", 5)
    relative = lambda split, s: {p.relative_to(p.parents[1]) for p in train_paths(split, s)}  # noqa: E731
    assert relative(a, samples) == relative(b, shuffled)


def test_by_reference_split_shares_no_reference(tmp_path):
    samples = synthetic(tmp_path, n_refs=10, n_distortions=6)
    for seed in range(5):
        split = reference_split(samples, "live", seed)
        parts = split.apply(samples)
        train_refs, test_refs = {s.ref for s in parts.train}, {s.ref for s in parts.test}
        assert train_refs.isdisjoint(test_refs)
        assert (len(train_refs), len(test_refs)) == (8, 2)
        assert (len(parts.train), len(parts.test)) == (48, 12)
        assert split.params == {"train_fraction": 0.8, "n_refs": 10, "n_train_refs": 8}


def test_by_reference_split_requires_a_ref_on_every_sample(tmp_path):
    samples = synthetic(tmp_path, 3, 2)
    samples[4] = Sample(samples[4].path, samples[4].score, ref=None)
    with pytest.raises(ValueError, match=r"sample 4 \(r02/d0.bmp\) has no reference id"):
        reference_split(samples, "live", 0)


def test_subset_fraction_trains_on_part_of_the_80_part_and_keeps_its_test_part(tmp_path):
    samples = authentic(tmp_path, 100)
    base = random_split(samples, "koniq", 2)
    subsets = {f: subset_fraction_split(base, f) for f in (0.1, 0.2, 0.3)}
    for fraction, subset in subsets.items():
        assert subset.test == base.test
        assert set(subset.train) <= set(base.train)
        assert len(subset.train) == round(fraction * 100)
        assert subset.mode == SUBSET_FRACTION and subset.seed == 2
        assert subset.params == {"fraction": fraction, "base_mode": RANDOM, "base_train_fraction": 0.8}
    assert set(subsets[0.1].train) < set(subsets[0.2].train) < set(subsets[0.3].train)
    with pytest.raises(ValueError, match="needs 90 samples but its train part has 80"):
        subset_fraction_split(base, 0.9)


def test_k_shot_draws_from_the_training_part_and_keeps_the_test_part(tmp_path):
    samples = synthetic(tmp_path, n_refs=20, n_distortions=15)  # 300 samples
    base = reference_split(samples, "csiq", 1)
    shots = {k: k_shot_split(base, k) for k in (50, 100, 200)}
    for k, split in shots.items():
        assert len(split.train) == k
        assert set(split.train) <= set(base.train)
        assert split.test == base.test
    assert set(shots[50].train) < set(shots[100].train) < set(shots[200].train)
    assert make_split(samples, "csiq", K_SHOT, 1, base_mode=BY_REFERENCE, k=100) == shots[100]
    with pytest.raises(ValueError, match="k=241 exceeds its 240 training samples"):
        k_shot_split(base, 241)
    with pytest.raises(ValueError, match="subsets are drawn from"):
        k_shot_split(shots[50], 10)


def test_whole_dataset_splits(tmp_path):
    samples = authentic(tmp_path, 7)
    test_all = whole_dataset_split(samples, "livec")
    assert test_all.train == () and test_all.test == tuple(range(7)) and test_all.mode == WHOLE_TEST
    train_all = make_split(samples, "livec", WHOLE_TRAIN)
    assert train_all.test == () and train_all.train == tuple(range(7)) and train_all.seed is None


def test_repeated_splits_use_consecutive_seeds(tmp_path):
    samples = authentic(tmp_path, 30)
    assert split_seeds(3, base_seed=7) == [7, 8, 9]
    splits = make_repeated_splits(samples, "koniq", RANDOM, 10)
    assert [s.seed for s in splits] == list(range(10))
    assert len({s.test for s in splits}) == 10
    assert [s.seed for s in make_repeated_splits(samples, "koniq", RANDOM, 2, base_seed=100)] == [100, 101]
    assert len(make_repeated_splits(samples, "koniq", WHOLE_TEST, 10)) == 1


def test_splits_of_mixed_datasets_do_not_depend_on_the_mixture(tmp_path):
    a, b, c = authentic(tmp_path / "a", 40), synthetic(tmp_path / "b", 5, 4), authentic(tmp_path / "c", 25)
    mixed = splits_for_datasets({"koniq": a, "spaq": c, "kadid": b}, RANDOM, 3)
    other_order = splits_for_datasets({"kadid": b, "koniq": a}, RANDOM, 3)
    alone = make_repeated_splits(a, "koniq", RANDOM, 3)
    assert mixed["koniq"] == other_order["koniq"] == alone
    assert mixed["kadid"] == other_order["kadid"]


def test_bad_arguments_are_rejected(tmp_path):
    samples = authentic(tmp_path, 10)
    with pytest.raises(ValueError, match="train_fraction must be strictly between 0 and 1"):
        random_split(samples, "x", 0, train_fraction=1.0)
    with pytest.raises(ValueError, match="leaves an empty part"):
        random_split(samples, "x", 0, train_fraction=0.01)
    with pytest.raises(ValueError, match="needs a seed"):
        make_split(samples, "x", RANDOM)
    with pytest.raises(ValueError, match="unknown split mode"):
        make_split(samples, "x", "stratified", 0)
    with pytest.raises(ValueError, match="empty list"):
        random_split([], "x", 0)


def test_save_and_load_round_trip_stores_paths_once(tmp_path):
    samples = authentic(tmp_path, 40)
    splits = make_repeated_splits(samples, "koniq", RANDOM, 10) + [k_shot_split(random_split(samples, "koniq", 0), 5)]
    file = tmp_path / "out" / "koniq_splits.json"
    save_splits(file, splits)
    document = json.loads(file.read_text())
    assert len(document["path_lists"]) == 1
    assert next(iter(document["path_lists"].values()))[0] == "img_0000.jpg"
    loaded = load_splits(file)
    assert loaded == splits
    assert loaded[3].fingerprint == splits[3].fingerprint


def test_loaded_split_applies_on_another_machine_and_after_reordering(tmp_path):
    samples = authentic(tmp_path / "here", 40)
    split = random_split(samples, "koniq", 4)
    save_splits(tmp_path / "s.json", [split])
    moved = authentic(tmp_path / "there" / "deeper", 40)
    loaded = load_splits(tmp_path / "s.json")[0]
    assert loaded.resolve(moved) == (list(split.train), list(split.test))
    reordered = list(reversed(moved))
    parts = loaded.apply(reordered)
    assert {s.path.name for s in parts.test} == {samples[i].path.name for i in split.test}


def test_split_fails_loudly_on_a_different_dataset_version(tmp_path):
    samples = authentic(tmp_path, 40)
    split = random_split(samples, "koniq", 0)
    changed = samples[:-1] + [Sample(tmp_path / "images" / "img_new.jpg", 0.5)]
    with pytest.raises(SplitMismatchError, match=r"1 missing, e.g. \['img_0039.jpg'\]; 1 not in the split, e.g. \['img_new.jpg'\]"):
        split.apply(changed)
    with pytest.raises(SplitMismatchError, match="made for 40 samples"):
        split.apply(samples[:30])


def test_load_rejects_tampered_or_malformed_files(tmp_path):
    samples = authentic(tmp_path, 20)
    file = tmp_path / "s.json"
    save_splits(file, [random_split(samples, "koniq", 0), random_split(samples, "koniq", 1)])
    original = json.loads(file.read_text())

    def write(document) -> Path:
        file.write_text(json.dumps(document))
        return file

    edited = json.loads(json.dumps(original))
    next(iter(edited["path_lists"].values()))[0] = "renamed.jpg"
    with pytest.raises(SplitFileError, match="does not match its fingerprint"):
        load_splits(write(edited))

    edited = json.loads(json.dumps(original))
    edited["splits"][1]["test"].append(99)
    with pytest.raises(SplitFileError, match=r"s.json: splits\[1\]: .*index out of range"):
        load_splits(write(edited))

    edited = json.loads(json.dumps(original))
    edited["splits"][0]["train"] = sorted(edited["splits"][0]["train"] + [edited["splits"][0]["test"][-1]])
    with pytest.raises(SplitFileError, match=r"splits\[0\]: .*1 indices in both train and test"):
        load_splits(write(edited))

    edited = json.loads(json.dumps(original))
    del edited["splits"][0]["seed"]
    with pytest.raises(SplitFileError, match=r"splits\[0\]: expected keys"):
        load_splits(write(edited))

    with pytest.raises(SplitFileError, match="unsupported version"):
        load_splits(write({**original, "version": 99}))
    with pytest.raises(SplitFileError, match="not a perceptiq split file"):
        load_splits(write({"splits": []}))
    file.write_text("{not json")
    with pytest.raises(SplitFileError, match="not valid JSON"):
        load_splits(file)


def test_relative_paths_use_the_common_folder(tmp_path):
    samples = synthetic(tmp_path / "csiq", 2, 2)
    assert relative_sample_paths(samples) == ("r00/d0.bmp", "r00/d1.bmp", "r01/d0.bmp", "r01/d1.bmp")
    assert relative_sample_paths(samples, root=tmp_path)[0] == "csiq/dist/r00/d0.bmp"
    with pytest.raises(ValueError, match="is not under root"):
        relative_sample_paths(samples, root=tmp_path / "other")


def test_default_split_mode_is_by_reference_when_every_sample_names_one(tmp_path):
    from perceptiq.data.splits import default_split_mode

    assert default_split_mode(synthetic(tmp_path)) == BY_REFERENCE          # e.g. a CSV with a ref column
    assert default_split_mode(authentic(tmp_path)) == RANDOM
    assert default_split_mode(authentic(tmp_path), synthetic=True) == BY_REFERENCE
    partial = synthetic(tmp_path)[:6] + authentic(tmp_path)[:4]
    with pytest.raises(ValueError, match="4 of 10 samples have no reference id"):
        default_split_mode(partial, dataset="mine")
