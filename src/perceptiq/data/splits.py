"""Deterministic, portable train/test splits of one dataset.

A sample is any object with ``.path`` (path of the image file), ``.score`` (float) and ``.ref``
(reference-image id, or None for datasets without references). A :class:`Split` stores the indices
of the train and test samples *and* the dataset's relative sample paths, so a split file can be
checked against (and re-applied to) the dataset on another machine; applying it to a different
version of the dataset raises :class:`SplitMismatchError`.

Randomness without a random-number generator: every item (sample path, or reference id) gets the
key ``sha256("<dataset>|<mode>|<seed>|<item>")`` and a "random permutation" is the items sorted by
that key. So a split depends only on (dataset name, mode, seed, parameters, the set of files) --
not on the order samples are listed, not on which other datasets are mixed in, and not on the
numpy version. See docs/evaluation.md for the modes and how they reproduce the papers' protocols.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePath
from typing import Any, Generic, Iterable, Mapping, Protocol, Sequence, TypeVar

#: Identifies a split file; bump the version when the layout changes.
SPLITS_FILE_FORMAT = "perceptiq-splits"
SPLITS_FILE_VERSION = 1

#: Modes a :class:`Split` can have.
RANDOM = "random"  # random by image
BY_REFERENCE = "by_reference"  # random by reference image: no content in both parts
SUBSET_FRACTION = "subset_fraction"  # train on a fraction of the whole dataset, same test part as the base
K_SHOT = "k_shot"  # train on k samples of the base train part, same test part as the base
WHOLE_TRAIN = "whole_train"  # every sample trains (e.g. the source of a cross-dataset test)
WHOLE_TEST = "whole_test"  # every sample tests (zero-shot, cross-dataset target)
MODES = (RANDOM, BY_REFERENCE, SUBSET_FRACTION, K_SHOT, WHOLE_TRAIN, WHOLE_TEST)
BASE_MODES = (RANDOM, BY_REFERENCE)


class SampleLike(Protocol):
    """What splits need from a sample."""

    path: Path
    score: float
    ref: str | None


S = TypeVar("S", bound=SampleLike)


class SplitMismatchError(ValueError):
    """A split was applied to samples that are not the ones it was made from."""


class SplitFileError(ValueError):
    """A split file is malformed; the message names the file and the entry."""


# ----------------------------------------------------------------------------------------------
# sample paths, fingerprint, hash ordering
# ----------------------------------------------------------------------------------------------


def relative_sample_paths(samples: Sequence[SampleLike], root: str | os.PathLike | None = None) -> tuple[str, ...]:
    """POSIX paths of the samples relative to ``root`` (default: the deepest folder containing them all).

    The default root makes the result the same on every machine the dataset is copied to, as long
    as the dataset's own folder layout is the same. Returns a tuple of N strings, sample order.
    """
    if not samples:
        raise ValueError("cannot split an empty list of samples")
    paths = []
    for index, sample in enumerate(samples):
        try:
            paths.append(PurePath(os.fspath(sample.path)))
        except (AttributeError, TypeError) as error:
            raise ValueError(f"sample {index} has no usable .path ({error})") from error
    if root is None:
        try:
            root = os.path.commonpath([os.fspath(path.parent) for path in paths])
        except ValueError as error:
            raise ValueError(f"sample paths mix absolute and relative paths or drives ({error})") from error
    relative = []
    for index, path in enumerate(paths):
        try:
            relative.append(path.relative_to(root).as_posix() if os.fspath(root) else path.as_posix())
        except ValueError as error:
            raise ValueError(f"sample {index} path {path} is not under root {root}") from error
    return tuple(relative)


def fingerprint_paths(relative_paths: Sequence[str]) -> str:
    """sha256 (hex) of the ordered relative paths; identifies one version/order of a dataset."""
    digest = hashlib.sha256()
    for path in relative_paths:
        digest.update(path.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _hash_key(dataset: str, mode: str, seed: int, item: str) -> bytes:
    """Pseudo-random sort key of ``item``; sorting by it is a seeded random permutation."""
    return hashlib.sha256(f"{dataset}|{mode}|{seed}|{item}".encode("utf-8")).digest()


def _hash_order(items: Iterable[str], dataset: str, mode: str, seed: int) -> list[str]:
    """``items`` in the random order given by (dataset, mode, seed); ties (duplicates) by value."""
    return sorted(items, key=lambda item: (_hash_key(dataset, mode, seed, item), item))


def _count(fraction: float, total: int, what: str) -> int:
    """round(fraction * total), half up; must leave at least one item on each side."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{what} must be strictly between 0 and 1, got {fraction}")
    count = math.floor(fraction * total + 0.5)
    if not 0 < count < total:
        raise ValueError(f"{what}={fraction} of {total} items leaves an empty part ({count} vs {total - count})")
    return count


# ----------------------------------------------------------------------------------------------
# the split record
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitParts(Generic[S]):
    """The samples of one split, in dataset order."""

    train: list[S]
    test: list[S]


@dataclass(frozen=True, eq=False)
class Split:
    """One train/test partition of one dataset.

    Attributes:
        dataset: dataset name (part of the seed: the same seed gives different splits per dataset).
        mode: one of :data:`MODES`.
        seed: split seed; None for the whole-dataset modes.
        train: indices into the dataset's sample list, ascending.
        test: indices into the dataset's sample list, ascending; disjoint from ``train``.
        params: mode parameters, e.g. ``{"train_fraction": 0.8}`` or ``{"k": 50, "base_mode": ...}``.
        sample_paths: relative paths of *all* N samples in dataset order (the indices point into it).
    """

    dataset: str
    mode: str
    seed: int | None
    train: tuple[int, ...]
    test: tuple[int, ...]
    params: Mapping[str, Any]
    sample_paths: tuple[str, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"split of {self.dataset!r}: unknown mode {self.mode!r}; expected one of {MODES}")
        n = len(self.sample_paths)
        for part in ("train", "test"):
            indices = getattr(self, part)
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
                raise ValueError(f"split {self.label}: {part} indices must be ints")
            if list(indices) != sorted(set(indices)):
                raise ValueError(f"split {self.label}: {part} indices must be ascending without repeats")
            if indices and not (0 <= indices[0] and indices[-1] < n):
                raise ValueError(f"split {self.label}: {part} index out of range for {n} samples")
        shared = set(self.train) & set(self.test)
        if shared:
            raise ValueError(f"split {self.label}: {len(shared)} indices in both train and test, e.g. {min(shared)}")

    @property
    def n_samples(self) -> int:
        return len(self.sample_paths)

    @cached_property
    def fingerprint(self) -> str:
        """:func:`fingerprint_paths` of :attr:`sample_paths`."""
        return fingerprint_paths(self.sample_paths)

    @property
    def label(self) -> str:
        """Short readable name, e.g. ``koniq/k_shot(k=50)/seed=3``."""
        shown = ",".join(f"{key}={value}" for key, value in self.params.items() if not key.startswith("base_"))
        mode = f"{self.mode}({shown})" if shown else self.mode
        return f"{self.dataset}/{mode}/seed={self.seed}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        return self.to_dict() == other.to_dict() and self.sample_paths == other.sample_paths

    __hash__ = None  # params is a mapping; splits are not meant as dict keys

    def resolve(self, samples: Sequence[SampleLike], root: str | os.PathLike | None = None) -> tuple[list[int], list[int]]:
        """Train and test indices into ``samples``, after checking they are this split's dataset.

        Same files in the same order: the stored indices. Same files in another order: indices are
        remapped by relative path. Anything else raises :class:`SplitMismatchError`.
        """
        current = relative_sample_paths(samples, root)
        if current == self.sample_paths:
            return list(self.train), list(self.test)
        stored, given = set(self.sample_paths), set(current)
        unique = len(stored) == len(self.sample_paths) and len(given) == len(current)
        if stored == given and unique:
            position = {path: index for index, path in enumerate(current)}
            remap = lambda indices: sorted(position[self.sample_paths[i]] for i in indices)  # noqa: E731
            return remap(self.train), remap(self.test)
        missing, extra = sorted(stored - given), sorted(given - stored)
        raise SplitMismatchError(
            f"split {self.label} was made for {len(self.sample_paths)} samples (fingerprint "
            f"{self.fingerprint[:12]}) but {len(current)} were given (fingerprint {fingerprint_paths(current)[:12]}): "
            f"{len(missing)} missing, e.g. {missing[:3]}; {len(extra)} not in the split, e.g. {extra[:3]}"
            + ("" if unique else "; duplicate paths prevent matching by path")
        )

    def apply(self, samples: Sequence[S], root: str | os.PathLike | None = None) -> SplitParts[S]:
        """The train and test samples (dataset order); see :meth:`resolve` for the checks."""
        train, test = self.resolve(samples, root)
        return SplitParts(train=[samples[i] for i in train], test=[samples[i] for i in test])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record without the path list (stored once per dataset by :func:`save_splits`)."""
        return {
            "dataset": self.dataset,
            "mode": self.mode,
            "seed": self.seed,
            "params": dict(self.params),
            "n_samples": self.n_samples,
            "fingerprint": self.fingerprint,
            "train": list(self.train),
            "test": list(self.test),
        }


# ----------------------------------------------------------------------------------------------
# split makers
# ----------------------------------------------------------------------------------------------


def _check_dataset_name(dataset: str) -> None:
    if not isinstance(dataset, str) or not dataset or "|" in dataset:
        raise ValueError(f"dataset name must be a non-empty string without '|', got {dataset!r}")


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")


def random_split(
    samples: Sequence[SampleLike], dataset: str, seed: int, *, train_fraction: float = 0.8, root=None
) -> Split:
    """Random split by image: ``round(train_fraction * N)`` samples train, the rest test (Gamma's 80/20)."""
    _check_dataset_name(dataset)
    _check_seed(seed)
    paths = relative_sample_paths(samples, root)
    n_train = _count(train_fraction, len(paths), "train_fraction")
    # Indices tie-break duplicate paths so every sample is placed exactly once.
    keyed = sorted(range(len(paths)), key=lambda i: (_hash_key(dataset, RANDOM, seed, paths[i]), paths[i], i))
    return Split(
        dataset=dataset,
        mode=RANDOM,
        seed=seed,
        train=tuple(sorted(keyed[:n_train])),
        test=tuple(sorted(keyed[n_train:])),
        params={"train_fraction": train_fraction},
        sample_paths=paths,
    )


def reference_split(
    samples: Sequence[SampleLike], dataset: str, seed: int, *, train_fraction: float = 0.8, root=None
) -> Split:
    """Random split by reference image: ``round(train_fraction * R)`` of the R references train.

    Every distorted version of a reference lands on the same side, so no content is shared
    (GRMP-IQA: "training and testing sets are split by reference images"). The image fraction is
    only approximately ``train_fraction`` when references have different numbers of images.
    """
    _check_dataset_name(dataset)
    _check_seed(seed)
    paths = relative_sample_paths(samples, root)
    refs = []
    for index, sample in enumerate(samples):
        ref = getattr(sample, "ref", None)
        if ref is None or ref == "":
            raise ValueError(
                f"{dataset}: sample {index} ({paths[index]}) has no reference id; "
                "a by-reference split needs .ref on every sample"
            )
        refs.append(str(ref))
    ordered_refs = _hash_order(set(refs), dataset, BY_REFERENCE, seed)
    n_train_refs = _count(train_fraction, len(ordered_refs), "train_fraction (of reference images)")
    train_refs = set(ordered_refs[:n_train_refs])
    return Split(
        dataset=dataset,
        mode=BY_REFERENCE,
        seed=seed,
        train=tuple(i for i, ref in enumerate(refs) if ref in train_refs),
        test=tuple(i for i, ref in enumerate(refs) if ref not in train_refs),
        params={"train_fraction": train_fraction, "n_refs": len(ordered_refs), "n_train_refs": n_train_refs},
        sample_paths=paths,
    )


def _train_order(base: Split) -> list[int]:
    """The base split's train indices in the random order used for every subset of it.

    One order per (dataset, base mode, seed): a smaller subset is a prefix of a larger one, so
    10% is inside 20%, and 50 shots are inside 100.
    """
    if base.mode not in BASE_MODES:
        raise ValueError(f"subsets are drawn from a {' or '.join(BASE_MODES)} split, got mode {base.mode!r}")
    mode_key = f"subset-of-{base.mode}"
    return sorted(
        base.train,
        key=lambda i: (_hash_key(base.dataset, mode_key, base.seed, base.sample_paths[i]), base.sample_paths[i], i),
    )


def _subset(base: Split, mode: str, n_train: int, params: dict[str, Any]) -> Split:
    return Split(
        dataset=base.dataset,
        mode=mode,
        seed=base.seed,
        train=tuple(sorted(_train_order(base)[:n_train])),
        test=base.test,
        params={**params, "base_mode": base.mode, "base_train_fraction": base.params["train_fraction"]},
        sample_paths=base.sample_paths,
    )


def k_shot_split(base: Split, k: int) -> Split:
    """Train on ``k`` samples drawn from ``base``'s train part; test on ``base``'s test part unchanged.

    GRMP-IQA Table 1: "randomly select subsets of 50, 100, 200 samples from the training set ... and
    evaluate the same test data as the full data supervised learning".
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k > len(base.train):
        raise ValueError(f"split {base.label}: k={k} exceeds its {len(base.train)} training samples")
    return _subset(base, K_SHOT, k, {"k": k})


def subset_fraction_split(base: Split, fraction: float) -> Split:
    """Train on ``round(fraction * N)`` samples (N = whole dataset) drawn from ``base``'s train part.

    GRMP-IQA Table 2 "Training Ratio 20%": the fraction is of the whole dataset, the training
    images come from the 80% part and the test part is the 80% setting's (see docs/evaluation.md).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction}")
    n_train = math.floor(fraction * base.n_samples + 0.5)
    if n_train < 1:
        raise ValueError(f"fraction={fraction} of {base.n_samples} samples is no sample")
    if n_train > len(base.train):
        raise ValueError(
            f"split {base.label}: fraction={fraction} needs {n_train} samples but its train part has {len(base.train)}"
        )
    return _subset(base, SUBSET_FRACTION, n_train, {"fraction": fraction})


def whole_dataset_split(samples: Sequence[SampleLike], dataset: str, *, role: str = "test", root=None) -> Split:
    """Every sample on one side: ``role="test"`` (zero-shot / cross-dataset target) or ``"train"``."""
    _check_dataset_name(dataset)
    if role not in ("train", "test"):
        raise ValueError(f"role must be 'train' or 'test', got {role!r}")
    paths = relative_sample_paths(samples, root)
    everything = tuple(range(len(paths)))
    return Split(
        dataset=dataset,
        mode=WHOLE_TEST if role == "test" else WHOLE_TRAIN,
        seed=None,
        train=() if role == "test" else everything,
        test=everything if role == "test" else (),
        params={},
        sample_paths=paths,
    )


def make_split(
    samples: Sequence[SampleLike],
    dataset: str,
    mode: str,
    seed: int | None = None,
    *,
    train_fraction: float = 0.8,
    base_mode: str = RANDOM,
    k: int | None = None,
    fraction: float | None = None,
    root=None,
) -> Split:
    """One split by mode name (for recipes and the CLI).

    ``k_shot`` and ``subset_fraction`` first make the ``base_mode`` split with the same seed and
    ``train_fraction``, then draw the training subset from it.
    """
    if mode == WHOLE_TEST or mode == WHOLE_TRAIN:
        return whole_dataset_split(samples, dataset, role="test" if mode == WHOLE_TEST else "train", root=root)
    if seed is None:
        raise ValueError(f"mode {mode!r} needs a seed")
    if mode == RANDOM:
        return random_split(samples, dataset, seed, train_fraction=train_fraction, root=root)
    if mode == BY_REFERENCE:
        return reference_split(samples, dataset, seed, train_fraction=train_fraction, root=root)
    if mode in (K_SHOT, SUBSET_FRACTION):
        if base_mode not in BASE_MODES:
            raise ValueError(f"base_mode must be one of {BASE_MODES}, got {base_mode!r}")
        base = make_split(samples, dataset, base_mode, seed, train_fraction=train_fraction, root=root)
        if mode == K_SHOT:
            if k is None:
                raise ValueError("mode 'k_shot' needs k")
            return k_shot_split(base, k)
        if fraction is None:
            raise ValueError("mode 'subset_fraction' needs fraction")
        return subset_fraction_split(base, fraction)
    raise ValueError(f"unknown split mode {mode!r}; expected one of {MODES}")


def default_split_mode(samples: Sequence[SampleLike], *, synthetic: bool = False, dataset: str = "") -> str:
    """The base mode ``auto`` stands for: by reference image when the samples have references, else random.

    A synthetic dataset (distorted copies of references) or any labelled set whose every sample names its
    reference (a generic CSV with a ``ref`` column, e.g. ``perceptiq synthesize``'s) is split by reference,
    so no photo is in both parts (GRMP-IQA's protocol); a set without references is split by image. A set
    where only some samples name a reference is ambiguous and refused: fill the column or choose a mode.
    """
    with_ref = sum(1 for s in samples if getattr(s, "ref", None) not in (None, ""))
    if with_ref and with_ref < len(samples):
        raise ValueError(f"{dataset or 'dataset'}: {len(samples) - with_ref} of {len(samples)} samples have no "
                         "reference id ('ref'), the others do; fill the column (a by-reference split keeps "
                         "each photo on one side) or choose the split mode (random or by_reference)")
    if synthetic or (samples and with_ref == len(samples)):
        return BY_REFERENCE
    return RANDOM


def split_seeds(n_splits: int, base_seed: int = 0) -> list[int]:
    """Seeds ``base_seed, base_seed + 1, ..., base_seed + n_splits - 1``."""
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 1:
        raise ValueError(f"n_splits must be a positive int, got {n_splits!r}")
    _check_seed(base_seed)
    return list(range(base_seed, base_seed + n_splits))


def make_repeated_splits(
    samples: Sequence[SampleLike],
    dataset: str,
    mode: str,
    n_splits: int = 10,
    *,
    base_seed: int = 0,
    **options: Any,
) -> list[Split]:
    """``n_splits`` splits with seeds from :func:`split_seeds`; ``options`` go to :func:`make_split`.

    Whole-dataset modes have no randomness; they give a single split whatever ``n_splits`` is.
    """
    if mode in (WHOLE_TEST, WHOLE_TRAIN):
        return [make_split(samples, dataset, mode, **options)]
    return [make_split(samples, dataset, mode, seed, **options) for seed in split_seeds(n_splits, base_seed)]


def splits_for_datasets(
    datasets: Mapping[str, Sequence[SampleLike]], mode: str, n_splits: int = 10, *, base_seed: int = 0, **options: Any
) -> dict[str, list[Split]]:
    """Repeated splits of several datasets (mixed training). Each dataset's splits depend only on its
    own name, samples and the seeds, so adding, removing or reordering datasets changes nothing."""
    return {name: make_repeated_splits(samples, name, mode, n_splits, base_seed=base_seed, **options) for name, samples in datasets.items()}


# ----------------------------------------------------------------------------------------------
# JSON files
# ----------------------------------------------------------------------------------------------


def save_splits(path: str | os.PathLike, splits: Sequence[Split]) -> None:
    """Write ``splits`` to a JSON file; each distinct path list is stored once, keyed by fingerprint."""
    path_lists: dict[str, list[str]] = {}
    for split in splits:
        path_lists.setdefault(split.fingerprint, list(split.sample_paths))
    document = {
        "format": SPLITS_FILE_FORMAT,
        "version": SPLITS_FILE_VERSION,
        "splits": [split.to_dict() for split in splits],
        "path_lists": path_lists,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


_SPLIT_KEYS = ("dataset", "mode", "seed", "params", "n_samples", "fingerprint", "train", "test")


def load_splits(path: str | os.PathLike) -> list[Split]:
    """Read a file written by :func:`save_splits`; every entry is checked (keys, fingerprint, indices)."""
    where = os.fspath(path)
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SplitFileError(f"{where}: not valid JSON ({error})") from error
    if not isinstance(document, dict) or document.get("format") != SPLITS_FILE_FORMAT:
        raise SplitFileError(f"{where}: not a perceptiq split file (expected format {SPLITS_FILE_FORMAT!r})")
    if document.get("version") != SPLITS_FILE_VERSION:
        raise SplitFileError(f"{where}: unsupported version {document.get('version')!r}; this code reads {SPLITS_FILE_VERSION}")
    path_lists = document.get("path_lists")
    entries = document.get("splits")
    if not isinstance(path_lists, dict) or not isinstance(entries, list):
        raise SplitFileError(f"{where}: needs a 'splits' list and a 'path_lists' object")

    checked_lists: dict[str, tuple[str, ...]] = {}
    for fingerprint, paths in path_lists.items():
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise SplitFileError(f"{where}: path_lists[{fingerprint[:12]}] must be a list of strings")
        if fingerprint_paths(paths) != fingerprint:
            raise SplitFileError(f"{where}: path_lists[{fingerprint[:12]}] does not match its fingerprint (file edited?)")
        checked_lists[fingerprint] = tuple(paths)

    splits = []
    for position, entry in enumerate(entries):
        at = f"{where}: splits[{position}]"
        if not isinstance(entry, dict) or set(entry) != set(_SPLIT_KEYS):
            found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise SplitFileError(f"{at}: expected keys {sorted(_SPLIT_KEYS)}, found {found}")
        sample_paths = checked_lists.get(entry["fingerprint"])
        if sample_paths is None:
            raise SplitFileError(f"{at}: fingerprint {str(entry['fingerprint'])[:12]} has no entry in path_lists")
        if entry["n_samples"] != len(sample_paths):
            raise SplitFileError(f"{at}: n_samples={entry['n_samples']} but its path list has {len(sample_paths)}")
        try:
            splits.append(
                Split(
                    dataset=entry["dataset"],
                    mode=entry["mode"],
                    seed=entry["seed"],
                    train=tuple(entry["train"]),
                    test=tuple(entry["test"]),
                    params=dict(entry["params"]),
                    sample_paths=sample_paths,
                )
            )
        except (ValueError, TypeError) as error:
            raise SplitFileError(f"{at}: {error}") from error
    return splits
