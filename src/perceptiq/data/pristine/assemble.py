"""Assembling the pristine photographs into a folder: ``DEST/train/*.png``, ``DEST/heldout/*.png``,
``DEST/manifest.csv`` (one row per photograph: file, role, source, licence, sizes, content, JPEG quality,
downscale, sha256 of the stored PNG) and, when something failed, ``DEST/failures.csv``.

Every source file is checked against the sha256 of the declared table before it is decoded, so the folder
holds exactly the photographs the table names. A source that cannot be had, a checksum that differs or a file
that does not decode becomes a failure record for the photographs concerned; the others are still written.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

from PIL import Image

from .sources import OPENERS, Opener, PhotoUnavailable, SourceUnavailable, default_cache
from .table import Photo, PristineTable, ProcessingRule, by_collection

MANIFEST_FIELDS = ("file", "role", "source", "licence", "original_size", "size", "content", "jpeg_quality",
                   "downscale", "sha256")


@dataclass
class ManifestRow:
    file: str
    role: str
    source: str
    licence: str
    original_size: str
    size: str
    content: str
    jpeg_quality: str
    downscale: str
    sha256: str


@dataclass
class Failure:
    file: str
    source: str
    error: str


@dataclass
class AssemblyResult:
    rows: list[ManifestRow] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    reused: int = 0   # photographs kept from an earlier run (--resume)
    written: int = 0  # photographs fetched and stored by this run


class PhotoRejected(ValueError):
    """A source file that decodes but cannot be a pristine photograph under the processing rule."""


def prepare_photo(data: bytes, jpeg_quality: Optional[int], rule: ProcessingRule) -> tuple[Image.Image, tuple[int, int]]:
    """Decode a source file and shrink it by the rule: -> (RGB or greyscale image, original (width, height)).

    Raises PhotoRejected for transparency (a cut-out is not a photograph) or a short side below the rule's
    minimum after shrinking, and whatever Pillow raises for a file that does not decode.
    """
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        picture = opened.copy()
        original = opened.size
    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        alpha = picture.convert("RGBA").getchannel("A")
        if alpha.getextrema()[0] < 255:
            raise PhotoRejected("has transparent pixels")
    picture = picture.convert("L" if picture.mode in ("L", "I;16", "I", "LA") else "RGB")
    size = rule.target_size(*original, jpeg_quality)
    if size != original:
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    if min(picture.size) < rule.min_short_side:
        raise PhotoRejected(f"short side {min(picture.size)} px < {rule.min_short_side} after shrinking")
    return picture, original


def _png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _row(photo: Photo, original: tuple[int, int], stored: tuple[int, int], png_sha256: str) -> ManifestRow:
    factor = original[0] / stored[0]
    return ManifestRow(file=photo.relative_file, role=photo.role, source=photo.source, licence=photo.licence,
                       original_size=f"{original[0]}x{original[1]}", size=f"{stored[0]}x{stored[1]}",
                       content=photo.content, jpeg_quality="" if photo.jpeg_quality is None else str(photo.jpeg_quality),
                       downscale=f"{factor:.3f}" if abs(factor - 1) > 1e-9 else "1", sha256=png_sha256)


def _previous_rows(dest: Path) -> dict[str, ManifestRow]:
    manifest = dest / "manifest.csv"
    if not manifest.is_file():
        return {}
    with manifest.open(newline="", encoding="utf-8") as handle:
        return {r["file"]: ManifestRow(**{k: r.get(k, "") for k in MANIFEST_FIELDS}) for r in csv.DictReader(handle)}


def assemble(table: PristineTable, dest: Path | str, *, role: str = "all", cache: Path | str | None = None,
             openers: Optional[Mapping[str, Opener]] = None, resume: bool = False,
             progress: Optional[Callable[[int, int], None]] = None) -> AssemblyResult:
    """Fetch, check, shrink and store the photographs of ``role`` (train, heldout or all) under ``dest``.

    ``resume``: a photograph whose PNG is already in ``dest`` with the sha256 the previous manifest recorded
    is kept, not fetched again. ``openers`` maps a source kind to the function that opens it (tests pass
    fakes; default: :data:`sources.OPENERS`). ``progress(done, total)`` is called after each photograph.
    """
    dest = Path(dest)
    cache = Path(cache) if cache is not None else default_cache()
    openers = dict(OPENERS if openers is None else openers)
    photos = table.select(role)
    previous = _previous_rows(dest) if resume else {}
    result, done = AssemblyResult(), 0

    def advance() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(photos))

    for _, group in by_collection(photos).items():
        pending = []
        for photo in group:
            kept = previous.get(photo.relative_file)
            stored = dest / photo.relative_file
            if kept is not None and stored.is_file() and hashlib.sha256(stored.read_bytes()).hexdigest() == kept.sha256:
                result.rows.append(kept)
                result.reused += 1
                advance()
            else:
                pending.append(photo)
        if not pending:
            continue
        collection = pending[0].collection
        try:
            source = openers[collection.kind](collection, cache)
        except SourceUnavailable as err:
            for photo in pending:
                result.failures.append(Failure(photo.relative_file, photo.source, str(err)))
                advance()
            continue
        for photo in pending:
            try:
                data = source.read(photo)
                digest = hashlib.sha256(data).hexdigest()
                if digest != photo.sha256:
                    raise PhotoUnavailable(f"sha256 {digest} differs from the table's {photo.sha256} "
                                           f"(photos.csv line {photo.line})")
                picture, original = prepare_photo(data, photo.jpeg_quality, table.rule)
                png = _png_bytes(picture)
                _write_atomically(dest / photo.relative_file, png)
                result.rows.append(_row(photo, original, picture.size, hashlib.sha256(png).hexdigest()))
                result.written += 1
            except Exception as err:  # one bad photograph never stops the others: it is recorded instead
                result.failures.append(Failure(photo.relative_file, photo.source, f"{type(err).__name__}: {err}"))
            advance()
    if resume:  # rows of an earlier run for the other role stay listed while their files are there
        selected = {p.relative_file for p in photos}
        result.rows.extend(r for f, r in previous.items() if f not in selected and (dest / f).is_file())
    write_manifest(dest, result)
    return result


def write_manifest(dest: Path, result: AssemblyResult) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    rows = sorted(result.rows, key=lambda r: (r.role != "train", r.file))
    with (dest / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    failures = dest / "failures.csv"
    if result.failures:
        with failures.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=("file", "source", "error"), lineterminator="\n")
            writer.writeheader()
            writer.writerows(asdict(f) for f in result.failures)
    elif failures.exists():
        failures.unlink()
