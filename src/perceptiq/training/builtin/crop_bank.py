"""A bank of native-resolution crops of distorted pristine photographs, grouped by image, for rank learning.

Why a bank: the 25 synthetic distortion types cost from milliseconds (brightness) to seconds (JPEG 2000
rate search, Wiener denoising) per megapixel; applying them once, storing 224x224 crops, and sampling
crops from the bank for every training step makes an epoch cost only the model's time.

What one *group* is (the unit the ranking loss compares inside): one photograph, rescaled so that its
long side is a log-uniform draw in ``long_side`` (fine distortions must be seen at the size a camera
photo is viewed at, not after a 20x downscale), distorted as a whole image into ``versions``:

    [pristine, type A at levels 1..5, type B at one random level]

and cut at one random 224x224 position, the same position in every version. Type A cycles through all
types over the photo's rounds (every type is seen on every ~25th round); type B (a different type)
gives each group a cross-type comparison. A version whose crop did not change (a distortion that left
that region identical, e.g. impulse noise at a low density on a flat crop) is flagged ``changed=False``
so the ranking loss can ignore pairs that are not real differences. With ``pristine_chroma_fraction``
> 0, that fraction of rounds first makes the photograph more vivid (chroma scaled up) and uses the vivid
photograph as the round's pristine version, so strong colour alone is not learned as a distortion.
With ``crop_candidates`` = k > 1, each position is the most detailed of k random candidates (mean
absolute Laplacian of the pristine version's luma), so fewer groups are flat sky whose "blurred" versions
differ from the pristine one by nothing a viewer could see, yet carry a level-5 target.

Layout on disk (``root``): ``shards/NNNNN.npz`` per photo (resumable: finished shards are kept),
then ``crops.npy`` [G, V, 224, 224, 3] uint8 (memory-mapped for training) and ``meta.npz``
(photo, round, type ids, levels, changed) once every shard exists, plus ``spec.json``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...data.synthetic import get_distortion, list_distortions
from ...data.synthetic.colour import from_uint8, to_uint8
from ...data.synthetic.distortions.chromatic import scale_chroma
from ...data.synthetic.sources import load_pristine

log = logging.getLogger(__name__)

PRISTINE_LEVEL = 0


@dataclass(frozen=True)
class CropBankSpec:
    """Everything that determines a bank's content (its fingerprint is a hash of this)."""

    seed: int = 0
    rounds: int = 6                      # distortion rounds per photograph
    crops_per_round: int = 4             # crop positions per round (each one group)
    crop: int = 224
    long_side: tuple[int, int] = (400, 1100)
    levels: tuple[int, ...] = (1, 2, 3, 4, 5)
    types: tuple[str, ...] = field(default_factory=lambda: tuple(d.name for d in list_distortions() if d.available()))
    # Vivid pristine photographs: in this fraction of rounds the photograph's chroma (CIE a*, b*) is first
    # multiplied by a uniform draw from ``pristine_chroma_gain``, and that vivid photograph is the round's
    # pristine version that every distortion starts from. 0 draws nothing (banks built before it are
    # unchanged). Why: docs/builtin-model.md, "Vivid pristine photographs".
    pristine_chroma_fraction: float = 0.0
    pristine_chroma_gain: tuple[float, float] = (1.0, 1.0)
    # Detail-seeking crops: each crop position is the most detailed of this many random candidates
    # (``crop_detail``). 1 draws one position, as banks built before the option did (same content and
    # fingerprint). Why: docs/builtin-model.md, "Detail-seeking crops".
    crop_candidates: int = 1

    def __post_init__(self):
        lo, hi = self.pristine_chroma_gain
        if not 0.0 <= self.pristine_chroma_fraction <= 1.0:
            raise ValueError(f"pristine_chroma_fraction must be in [0, 1], got {self.pristine_chroma_fraction}")
        if not 1.0 <= lo <= hi:
            raise ValueError(f"pristine_chroma_gain must be [low, high] with 1 <= low <= high, got {[lo, hi]}")
        if self.pristine_chroma_fraction > 0 and hi == 1.0:
            # a gain of exactly 1 leaves the photograph as it was: vivid rounds would silently be plain ones
            raise ValueError("pristine_chroma_fraction > 0 needs pristine_chroma_gain above 1 "
                             f"(got {[lo, hi]}, which leaves every photograph unchanged)")
        if isinstance(self.crop_candidates, bool) or not isinstance(self.crop_candidates, int) \
                or self.crop_candidates < 1:
            raise ValueError(f"crop_candidates must be a whole number >= 1, got {self.crop_candidates!r}")

    @property
    def versions(self) -> int:
        return 1 + len(self.levels) + 1

    def fingerprint(self, photos: list[str]) -> str:
        spec = asdict(self)
        if self.pristine_chroma_fraction == 0:
            # banks without vivid rounds keep the fingerprint they had before the option existed
            del spec["pristine_chroma_fraction"], spec["pristine_chroma_gain"]
        if self.crop_candidates == 1:
            del spec["crop_candidates"]
        payload = json.dumps({"spec": spec, "photos": photos}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _rescale(img: np.ndarray, long_side: int) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    if max(h, w) <= long_side:
        return img
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return from_uint8(np.asarray(Image.fromarray(to_uint8(img)).resize(size, Image.Resampling.LANCZOS)))


def laplacian_detail_map(rgb: np.ndarray) -> np.ndarray:
    """Summed-area table of |4-neighbour Laplacian| of the BT.601 luma of ``rgb`` (H, W, 3) uint8.

    Returns (H + 1, W + 1) float64 with zeros in the first row and column, so the detail of the window
    [y, y + s) x [x, x + s) is ``crop_detail(table, y, x, s)``. The border pixels' Laplacian is 0.
    """
    from ...classical.images import luminance
    from ...classical.laplacian import laplacian

    y = luminance(rgb)
    lap = np.zeros_like(y)
    lap[1:-1, 1:-1] = np.abs(laplacian(y))
    table = np.zeros((y.shape[0] + 1, y.shape[1] + 1))
    table[1:, 1:] = lap.cumsum(0).cumsum(1)
    return table


def crop_detail(table: np.ndarray, y: int, x: int, size: int) -> float:
    """Mean |Laplacian| of luma over the size x size window at (y, x), from ``laplacian_detail_map``."""
    total = table[y + size, x + size] - table[y, x + size] - table[y + size, x] + table[y, x]
    return float(total) / (size * size)


def _crop_position(rng: np.random.Generator, h: int, w: int, spec: CropBankSpec,
                   detail: np.ndarray | None) -> tuple[int, int]:
    """One crop position: a single draw, or the most detailed of ``spec.crop_candidates`` draws
    (``detail``: the pristine version's ``laplacian_detail_map``; the first of equals wins)."""
    candidates = [(int(rng.integers(h - spec.crop + 1)), int(rng.integers(w - spec.crop + 1)))
                  for _ in range(spec.crop_candidates)]
    if detail is None:
        return candidates[0]
    return max(candidates, key=lambda yx: crop_detail(detail, yx[0], yx[1], spec.crop))


def make_photo_groups(img: np.ndarray, photo_index: int, spec: CropBankSpec) -> dict[str, np.ndarray]:
    """All groups of one photograph: crops [R*C, V, crop, crop, 3] uint8 and their metadata arrays.

    img: (H, W, 3) float32 in [0, 1], both sides >= spec.crop.
    """
    types = list(spec.types)
    rng = np.random.default_rng([spec.seed, photo_index])
    offset = int(rng.integers(len(types)))
    crops, photo, rounds, type_a, type_b, level_b, changed = [], [], [], [], [], [], []
    for r in range(spec.rounds):
        lo, hi = spec.long_side
        target = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
        target = max(target, spec.crop + 1)
        scaled = _rescale(img, target)
        if min(scaled.shape[:2]) < spec.crop:
            scaled = img
        if spec.pristine_chroma_fraction > 0 and rng.uniform() < spec.pristine_chroma_fraction:
            scaled = scale_chroma(scaled, float(rng.uniform(*spec.pristine_chroma_gain)))
        a = types[(offset + photo_index * spec.rounds + r) % len(types)]
        b = types[int(rng.integers(len(types) - 1))]
        if b == a:
            b = types[-1]
        lb = int(rng.choice(spec.levels))
        distortion_seed = int(rng.integers(2**31))
        versions = [scaled]
        for level in spec.levels:
            versions.append(get_distortion(a)(scaled, level, np.random.default_rng(distortion_seed)))
        versions.append(get_distortion(b)(scaled, lb, np.random.default_rng(distortion_seed + 1)))
        stored = np.stack([to_uint8(v) for v in versions])              # [V, H, W, 3]
        h, w = stored.shape[1:3]
        detail = laplacian_detail_map(stored[0]) if spec.crop_candidates > 1 else None
        for _ in range(spec.crops_per_round):
            y, x = _crop_position(rng, h, w, spec, detail)
            block = stored[:, y:y + spec.crop, x:x + spec.crop]
            crops.append(block)
            changed.append(np.array([True] + [not np.array_equal(block[0], block[v])
                                              for v in range(1, spec.versions)]))
            photo.append(photo_index)
            rounds.append(r)
            type_a.append(types.index(a))
            type_b.append(types.index(b))
            level_b.append(lb)
    return {"crops": np.stack(crops), "photo": np.array(photo, np.int32), "round": np.array(rounds, np.int16),
            "type_a": np.array(type_a, np.int16), "type_b": np.array(type_b, np.int16),
            "level_b": np.array(level_b, np.int16), "changed": np.stack(changed)}


def _make_shard(path: str, photo_index: int, spec: CropBankSpec, shard: str) -> str:
    import torch

    torch.set_num_threads(1)
    img = load_pristine(Path(path), max_side=None)
    if min(img.shape[:2]) < spec.crop:
        raise ValueError(f"{path}: {img.shape[1]}x{img.shape[0]} is smaller than the {spec.crop} crop")
    arrays = make_photo_groups(img, photo_index, spec)
    tmp = f"{shard}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, shard)
    return shard


def build_crop_bank(photos: list[Path], root: Path, spec: CropBankSpec, *, workers: int = 2,
                    progress=None) -> "CropBank":
    """Make (or finish) the bank for ``photos`` under ``root``; returns it opened.

    Resumable: shards already on disk are kept, so a stopped build continues where it was. A folder
    holding a bank of another spec or photo list is refused (its fingerprint differs).
    """
    root = Path(root)
    names = [Path(p).name for p in photos]
    fingerprint = spec.fingerprint(names)
    spec_file = root / "spec.json"
    if spec_file.is_file():
        recorded = json.loads(spec_file.read_text())
        if recorded.get("fingerprint") != fingerprint:
            raise ValueError(f"{root} holds a crop bank of another spec or photo list "
                             f"({recorded.get('fingerprint')} != {fingerprint}); use another folder")
    (root / "shards").mkdir(parents=True, exist_ok=True)
    spec_file.write_text(json.dumps({"fingerprint": fingerprint, "spec": asdict(spec), "photos": names}, indent=1))
    if (root / "crops.npy").is_file() and (root / "meta.npz").is_file():
        return CropBank(root)
    todo = [(str(p), i, str(root / "shards" / f"{i:05d}.npz")) for i, p in enumerate(photos)
            if not (root / "shards" / f"{i:05d}.npz").is_file()]
    failures = []
    if todo:
        with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {pool.submit(_make_shard, path, i, spec, shard): path for path, i, shard in todo}
            for done, future in enumerate(as_completed(futures), 1):
                try:
                    future.result()
                except Exception as err:  # one bad photograph is recorded, never the end of the build
                    failures.append(f"{futures[future]}: {err}")
                    log.warning("crop bank: %s: %s", futures[future], err)
                if progress is not None:
                    progress(done, len(todo))
    if failures:
        (root / "failures.txt").write_text("\n".join(failures) + "\n")
    _consolidate(root, len(photos))
    return CropBank(root)


def _consolidate(root: Path, n_photos: int) -> None:
    shards = [root / "shards" / f"{i:05d}.npz" for i in range(n_photos)]
    shards = [s for s in shards if s.is_file()]
    if not shards:
        raise ValueError(f"{root}: no shard could be made (see failures.txt)")
    sizes = []
    for shard in shards:
        with np.load(shard) as z:
            sizes.append(z["photo"].shape[0])
            shape = z["crops"].shape[1:]
    total = sum(sizes)
    tmp = root / "crops.tmp.npy"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(total, *shape))
    meta: dict[str, list] = {}
    start = 0
    for shard, size in zip(shards, sizes):
        with np.load(shard) as z:
            out[start:start + size] = z["crops"]
            for key in ("photo", "round", "type_a", "type_b", "level_b", "changed"):
                meta.setdefault(key, []).append(z[key])
        start += size
    out.flush()
    del out
    np.savez(root / "meta.tmp.npz", **{k: np.concatenate(v) for k, v in meta.items()})
    os.replace(root / "meta.tmp.npz", root / "meta.npz")
    os.replace(tmp, root / "crops.npy")


class CropBank:
    """A finished bank: ``crops`` [G, V, S, S, 3] uint8 (memory-mapped) and per-group metadata."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.crops = np.load(self.root / "crops.npy", mmap_mode="r")
        with np.load(self.root / "meta.npz") as z:
            self.meta = {k: z[k] for k in z.files}
        info = json.loads((self.root / "spec.json").read_text())
        self.spec = info["spec"]
        self.types = list(self.spec["types"])
        self.photos = info["photos"]

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    def version_levels(self, group: int) -> np.ndarray:
        """[V] quality level of each version of a group: 0 pristine, 1..5 type A, then type B's level."""
        levels = list(self.spec["levels"])
        return np.array([PRISTINE_LEVEL, *levels, int(self.meta["level_b"][group])], dtype=np.int64)

    def groups_of_photos(self, photo_ids) -> np.ndarray:
        """Indices of the groups cut from the given photographs (for train/validation splits by photo)."""
        return np.flatnonzero(np.isin(self.meta["photo"], np.asarray(list(photo_ids))))
