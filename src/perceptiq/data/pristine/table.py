"""The declared table of pristine photographs: collections (``collections.yaml``) and photographs
(``photos.csv``), read and checked without touching any source.

A bad row is reported with its file and line, so a hand edit that breaks the table fails loudly at load time
rather than half-way through an assembly.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import yaml

HERE = Path(__file__).resolve().parent
COLLECTIONS_FILE = HERE / "collections.yaml"
PHOTOS_FILE = HERE / "photos.csv"

KINDS = ("debian", "pypi", "git")
ROLES = ("train", "heldout")
CONTENT_TAGS = ("nature", "plant", "animal", "people", "city", "indoor", "object", "night", "texture", "text")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class TableError(ValueError):
    """A malformed entry of the declared table; the message names the file and line or key."""


@dataclass(frozen=True)
class ProcessingRule:
    """How a source file becomes a stored photograph (the same numbers for every collection).

    ``scale`` = min(1, max_side / longest side); a JPEG source whose estimated quality is below
    ``min_jpeg_quality`` is shrunk by at least ``low_quality_min_downscale`` (scale <= 1 / that), which averages
    block edges and quantisation noise below visibility; its quality must still be >= ``low_quality_floor``.
    """

    max_side: int = 2048
    min_short_side: int = 500
    min_jpeg_quality: int = 80
    low_quality_floor: int = 65
    low_quality_min_downscale: float = 2.0

    def scale(self, width: int, height: int, jpeg_quality: Optional[int]) -> float:
        """Resize factor (<= 1) for a (width, height) source of that JPEG quality (None: lossless source)."""
        factor = min(1.0, self.max_side / max(width, height))
        if jpeg_quality is not None and jpeg_quality < self.min_jpeg_quality:
            factor = min(factor, 1.0 / self.low_quality_min_downscale)
        return factor

    def target_size(self, width: int, height: int, jpeg_quality: Optional[int]) -> tuple[int, int]:
        factor = self.scale(width, height, jpeg_quality)
        if factor >= 1.0:
            return width, height
        return round(width * factor), round(height * factor)


@dataclass(frozen=True)
class Collection:
    """One source of photographs: a Debian package, a PyPI distribution or a git repository at a commit."""

    name: str
    kind: str
    role: str
    licence: str
    package: Optional[str] = None
    version: Optional[str] = None
    url: Optional[str] = None
    commit: Optional[str] = None
    licence_file: Optional[str] = None
    attribution: Optional[str] = None
    notes: Optional[str] = None

    @property
    def repository(self) -> Optional[str]:
        """``owner/name`` of a git URL (None for packages)."""
        if self.url is None:
            return None
        match = re.search(r"[:/]([^/:]+/[^/]+?)(?:\.git)?/?$", self.url)
        return match.group(1) if match else None

    def describe(self) -> str:
        if self.kind == "git":
            return f"git repository {self.url} at {self.commit}"
        if self.kind == "debian":
            return f"Debian package {self.package}={self.version}"
        return f"PyPI distribution {self.package}=={self.version}"


@dataclass(frozen=True)
class Photo:
    """One photograph: the file ``path`` inside its collection's source (at ``commit`` for git)."""

    collection: Collection
    path: str
    sha256: str
    name: str
    licence: str
    content: str
    jpeg_quality: Optional[int]
    commit: Optional[str] = None
    line: int = 0

    @property
    def role(self) -> str:
        return self.collection.role

    @property
    def source(self) -> str:
        """Where the bytes come from, in one string (written to the manifest)."""
        c = self.collection
        if c.kind == "git":
            return f"git:{c.repository}@{self.commit}:{self.path}"
        if c.kind == "debian":
            return f"debian:{c.package}={c.version}:/{self.path}"
        return f"pypi:{c.package}=={c.version}:{self.path}"

    @property
    def relative_file(self) -> str:
        """Where the assembled PNG goes below the destination folder."""
        return f"{self.role}/{self.name}.png"


@dataclass(frozen=True)
class PristineTable:
    collections: dict[str, Collection]
    photos: tuple[Photo, ...]
    rule: ProcessingRule = field(default_factory=ProcessingRule)

    def select(self, role: str = "all") -> list[Photo]:
        if role not in ROLES + ("all",):
            raise ValueError(f"role must be one of {', '.join(ROLES + ('all',))}, got {role!r}")
        return [p for p in self.photos if role == "all" or p.role == role]

    def count(self, role: str) -> int:
        return len(self.select(role))


def _collection(name: str, entry: object, where: str) -> Collection:
    if not isinstance(entry, dict):
        raise TableError(f"{where}: collection {name!r} must be a mapping")
    known = {"kind", "role", "licence", "package", "version", "url", "commit", "licence_file", "attribution",
             "notes"}
    unknown = set(entry) - known
    if unknown:
        raise TableError(f"{where}: collection {name!r} has unknown keys {sorted(unknown)}")
    kind, role, licence = entry.get("kind"), entry.get("role"), entry.get("licence")
    if kind not in KINDS:
        raise TableError(f"{where}: collection {name!r}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if role not in ROLES:
        raise TableError(f"{where}: collection {name!r}: role must be one of {', '.join(ROLES)}, got {role!r}")
    if not licence:
        raise TableError(f"{where}: collection {name!r} has no licence")
    needed = ("url", "commit") if kind == "git" else ("package", "version")
    for key in needed:
        if not entry.get(key):
            raise TableError(f"{where}: collection {name!r} ({kind}) needs {key!r}")
    if kind == "git" and not _COMMIT.match(str(entry["commit"])):
        raise TableError(f"{where}: collection {name!r}: commit must be 40 hex digits, got {entry['commit']!r}")
    return Collection(name=name, **{k: (str(v) if v is not None else None) for k, v in entry.items()})


def load_table(collections_file: Path | str = COLLECTIONS_FILE, photos_file: Path | str = PHOTOS_FILE) -> PristineTable:
    """Read and check the declared table (no network, no source is opened)."""
    collections_file, photos_file = Path(collections_file), Path(photos_file)
    raw = yaml.safe_load(collections_file.read_text(encoding="utf-8")) or {}
    if not isinstance(raw.get("collections"), dict) or not raw["collections"]:
        raise TableError(f"{collections_file}: no 'collections' mapping")
    collections = {name: _collection(name, entry, str(collections_file)) for name, entry in raw["collections"].items()}
    rule_values = raw.get("processing") or {}
    try:
        rule = ProcessingRule(**rule_values)
    except TypeError as err:
        raise TableError(f"{collections_file}: processing: {err}") from None

    photos: list[Photo] = []
    seen_names: dict[str, int] = {}
    with photos_file.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        required = {"collection", "path", "commit", "sha256", "name", "licence", "content", "jpeg_quality"}
        missing = required - set(reader.fieldnames or ())
        if missing:
            raise TableError(f"{photos_file}: missing columns {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            where = f"{photos_file}:{line}"
            collection = collections.get(row["collection"])
            if collection is None:
                raise TableError(f"{where}: unknown collection {row['collection']!r} "
                                 f"(declared: {', '.join(collections)})")
            if not row["path"] or row["path"].startswith("/"):
                raise TableError(f"{where}: path must be relative inside the source, got {row['path']!r}")
            if not _SHA256.match(row["sha256"]):
                raise TableError(f"{where}: sha256 must be 64 hex digits")
            if not _NAME.match(row["name"]):
                raise TableError(f"{where}: name {row['name']!r} may hold only letters, digits, '_', '.', '-'")
            key = f"{collection.role}/{row['name']}"
            if key in seen_names:
                raise TableError(f"{where}: name {row['name']!r} repeats line {seen_names[key]}")
            seen_names[key] = line
            if row["content"] not in CONTENT_TAGS:
                raise TableError(f"{where}: content must be one of {', '.join(CONTENT_TAGS)}, got {row['content']!r}")
            if not row["licence"]:
                raise TableError(f"{where}: no licence")
            commit = row["commit"] or None
            if commit is not None and (collection.kind != "git" or not _COMMIT.match(commit)):
                raise TableError(f"{where}: a commit (40 hex digits) is only for git collections")
            quality = int(row["jpeg_quality"]) if row["jpeg_quality"] else None
            if quality is not None and quality < rule.low_quality_floor:
                raise TableError(f"{where}: JPEG quality {quality} is below the floor {rule.low_quality_floor}")
            photos.append(Photo(collection=collection, path=row["path"], sha256=row["sha256"], name=row["name"],
                                licence=row["licence"], content=row["content"], jpeg_quality=quality,
                                commit=commit or collection.commit, line=line))
    return PristineTable(collections=collections, photos=tuple(photos), rule=rule)


def by_collection(photos: Iterable[Photo]) -> dict[str, list[Photo]]:
    grouped: dict[str, list[Photo]] = {}
    for photo in photos:
        grouped.setdefault(photo.collection.name, []).append(photo)
    return grouped
