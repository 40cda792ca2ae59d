"""Turn a folder of pristine images into a labelled, KADID-style synthetic IQA dataset.

Layout written under ``out_dir``::

    labels.csv                           path,score,ref,distortion,level,scene
    manifest.json                        types, levels, seed, label definition, skipped files
    reference/<ref_id>.png               the pristine image as used (resized, 8-bit), always PNG
    distorted/<ref_id>/<type>_<level>.<png|jpg>

Work is streamed: one source image is in memory at a time and every row is written
as soon as its image is, so memory stays flat however many sources there are.
"""

from __future__ import annotations

import csv
import json
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from ... import __version__
from .catalogue import DistortionType, get_distortion, list_distortions
from .label import DEFAULT_LABEL, ReferenceSSIM
from .sources import IMAGE_SUFFIXES, MIN_SIDE_PX, UnreadableImageError, list_source_images, load_pristine, reference_id
from .writing import OutputFormat, encode, output_format

# Bump whenever a distortion, a strength table, the label or the layout changes, so
# that datasets made by different versions are never mixed unknowingly.
GENERATOR_VERSION = "1"
LABELS_FILE = "labels.csv"
MANIFEST_FILE = "manifest.json"
CSV_HEADER = ("path", "score", "ref", "distortion", "level", "scene")
LEVEL_ENVELOPE = (
    "the score of level L is the minimum colour-SSIM score over levels 1..L of the same type on the same "
    "reference with the same random draws, so scores never rise with level"
)
REFERENCE_FORMAT = "png"  # references are kept lossless whatever the distorted images use


def synthesize(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    types: Sequence[str] | None = None,
    levels: Iterable[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    max_side: int | None = 512,
    image_format: str = "png",
    scene: str = "natural",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Distort every image under ``src_dir`` with every type and level; return the labels CSV path.

    ``types`` None means every type this Pillow supports (unsupported ones are listed in
    the manifest under "unavailable_types"); naming an unknown or unsupported type is an
    error. Unreadable sources are skipped with a warning and listed in the manifest under
    "skipped". ``progress(done, total)`` counts distorted images (total = sources x types x levels) and is
    called after each type of each source (an unreadable source counts as done at once).
    Output is deterministic given ``seed`` and the sources. With ``overwrite=True`` the CSV
    and manifest are replaced; image files of an earlier run are overwritten where the
    names coincide and otherwise left in place (nothing is deleted).
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    chosen, unavailable = resolve_types(types)
    chosen_levels = resolve_levels(levels)
    fmt = output_format(image_format)
    reference_fmt = output_format(REFERENCE_FORMAT)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    bad_side = isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < MIN_SIDE_PX
    if max_side is not None and bad_side:
        raise ValueError(f"max_side must be None or an integer >= {MIN_SIDE_PX}, got {max_side!r}")
    if not src_dir.is_dir():
        raise NotADirectoryError(f"source folder {src_dir} does not exist or is not a folder")
    labels_path = out_dir / LABELS_FILE
    if labels_path.exists() and not overwrite:
        raise FileExistsError(f"{labels_path} already exists; pass overwrite=True to replace it")
    out_dir.mkdir(parents=True, exist_ok=True)

    sources = list_source_images(src_dir, exclude=out_dir)
    if not sources:
        warnings.warn(f"no image files ({' '.join(IMAGE_SUFFIXES)}) under {src_dir}", stacklevel=2)
    skipped: list[dict[str, str]] = []
    taken_ids: set[str] = set()
    n_rows = n_references = 0
    per_type, total = len(chosen_levels), len(sources) * len(chosen) * len(chosen_levels)
    done = 0
    with labels_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        for source in sources:
            relative = source.relative_to(src_dir)
            try:
                pristine = load_pristine(source, max_side)
            except UnreadableImageError as error:
                skipped.append({"path": relative.as_posix(), "reason": str(error)})
                warnings.warn(f"skipping source image: {error}", stacklevel=2)
                done += len(chosen) * per_type
                if progress is not None:
                    progress(done, total)
            else:
                ref_id = reference_id(relative, taken_ids)
                ref_rel = write_image(out_dir, f"reference/{ref_id}", pristine, reference_fmt)[0]
                labeller = ReferenceSSIM(pristine)
                for distortion in chosen:
                    rows = distort_reference(
                        out_dir, pristine, labeller, ref_id, ref_rel, distortion, chosen_levels, seed, fmt, scene
                    )
                    writer.writerows(rows)
                    n_rows += len(rows)
                    done += per_type
                    if progress is not None:
                        progress(done, total)
                n_references += 1
                handle.flush()

    manifest = build_manifest(
        chosen, unavailable, chosen_levels, seed, max_side, image_format, scene, src_dir, n_references, n_rows, skipped
    )
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return labels_path


def distort_reference(
    out_dir: Path,
    pristine: np.ndarray,
    labeller: ReferenceSSIM,
    ref_id: str,
    ref_rel: str,
    distortion: DistortionType,
    levels: Sequence[int],
    seed: int,
    fmt: OutputFormat,
    scene: str,
) -> list[tuple]:
    """Write the requested ``levels`` of one type for one reference; return their CSV rows.

    All levels start from the same random state (seeded by seed, reference id and type
    name), so they differ only in strength. The label of level L is the lowest colour-SSIM
    score among levels 1..L (the "monotone envelope"): a stronger version of the same
    distortion is never better, even where SSIM saturates and fluctuates (e.g. colour
    shift beyond the texture's correlation length). Unrequested lower levels are
    computed, not written, so a label never depends on which levels were requested.
    """
    seed_sequence = np.random.SeedSequence([seed, stable_hash(ref_id), stable_hash(distortion.name)])
    wanted = set(levels)
    rows = []
    envelope = 1.0
    for level in range(1, max(wanted) + 1):
        distorted = distortion(pristine, level, np.random.default_rng(seed_sequence))
        stem = f"distorted/{ref_id}/{distortion.name}_{level}"
        if level in wanted:
            rel_path, stored = write_image(out_dir, stem, distorted, fmt)
        else:
            rel_path, stored = "", encode(distorted, fmt)[1]
        envelope = min(envelope, labeller.score(stored))
        if level in wanted:
            rows.append((rel_path, f"{envelope:.6f}", ref_rel, distortion.name, level, scene))
    return rows


def write_image(out_dir: Path, stem: str, img: np.ndarray, fmt: OutputFormat) -> tuple[str, np.ndarray]:
    """Encode ``img`` to ``out_dir/stem + suffix``; return (posix path relative to out_dir, image as stored)."""
    data, stored = encode(img, fmt)
    relative = f"{stem}{fmt.suffix}"
    target = out_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return relative, stored


def stable_hash(text: str) -> int:
    """A hash of ``text`` that is the same in every process (unlike ``hash``), for seeding."""
    return zlib.crc32(text.encode("utf-8"))


def resolve_types(types: Sequence[str] | None) -> tuple[list[DistortionType], list[str]]:
    """(types to generate, names of types left out because this Pillow cannot encode them)."""
    if types is None:
        everything = list_distortions()
        return [d for d in everything if d.available()], [d.name for d in everything if not d.available()]
    if isinstance(types, str):
        raise TypeError(f"types must be a sequence of names, not the string {types!r}")
    if not types:
        raise ValueError("types is empty; pass None for all types")
    chosen = []
    for name in dict.fromkeys(types):  # de-duplicate, keep order
        distortion = get_distortion(name)
        if not distortion.available():
            raise RuntimeError(
                f"distortion '{name}' needs Pillow's '{distortion.codec}' codec, which this Pillow lacks"
            )
        chosen.append(distortion)
    return chosen, []


def resolve_levels(levels: Iterable[int]) -> list[int]:
    """Sorted unique levels, each an integer in 1..5."""
    given = list(levels)
    bad = [lv for lv in given if isinstance(lv, bool) or not isinstance(lv, (int, np.integer)) or not 1 <= lv <= 5]
    if not given or bad:
        raise ValueError(f"levels must be a non-empty collection of integers in 1..5, got {given!r}")
    return sorted({int(lv) for lv in given})


def build_manifest(
    chosen: Sequence[DistortionType],
    unavailable: Sequence[str],
    levels: Sequence[int],
    seed: int,
    max_side: int | None,
    image_format: str,
    scene: str,
    src_dir: Path,
    n_references: int,
    n_rows: int,
    skipped: list[dict[str, str]],
) -> dict:
    """The JSON-able description of one generated dataset."""
    return {
        "generator": __name__.rsplit(".", 1)[0],
        "generator_version": GENERATOR_VERSION,
        "perceptiq_version": __version__,
        "source": str(src_dir),
        "seed": int(seed),
        "levels": list(levels),
        "max_side": max_side,
        "image_format": image_format,
        "reference_format": REFERENCE_FORMAT,
        "scene": scene,
        "labels_file": LABELS_FILE,
        "columns": list(CSV_HEADER),
        "label": {**DEFAULT_LABEL.describe(), "level_envelope": LEVEL_ENVELOPE},
        "types": [d.as_dict() for d in chosen],
        "unavailable_types": list(unavailable),
        "n_references": n_references,
        "n_rows": n_rows,
        "skipped": skipped,
    }
