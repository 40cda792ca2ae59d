"""Turn the paths a user names (files and folders) into the ordered list of image files to score.

Rules (docs/inference.md, "Which files are scored"):
* a path named explicitly is always yielded, whatever its extension and even when it does not exist —
  the decoder then reports "file not found" / "not an image" and the run gets an error row for it;
* a folder is walked depth-first with the entries of each folder in sorted (code-point) order, so the
  same tree always gives the same sequence; only files whose extension is in ``extensions``
  (case-insensitive) are taken, and hidden entries (names starting with ".", such as macOS ``._x.jpg``
  resource forks) are skipped;
* a file reached twice (named twice, inside two named folders, through a symlink) is yielded once, the
  first time; symlinked folders are followed, but a folder already being walked is not entered again.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# Formats photographs and datasets use. jp2/j2k need Pillow built with OpenJPEG and avif Pillow built with
# libavif (the wheels are); heic/heif decode through the optional ``heic`` extra (pillow-heif). A file
# whose decoder is missing is still listed: it becomes an error row saying what to install, never a
# silent skip.
DEFAULT_IMAGE_EXTENSIONS: frozenset[str] = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
    ".ppm", ".pgm", ".pbm", ".pnm", ".jp2", ".j2k", ".jpx", ".tga", ".ico", ".avif", ".heic", ".heif",
})


def iter_image_files(
    paths: Iterable[str | os.PathLike],
    *,
    recursive: bool = True,
    extensions: Iterable[str] = DEFAULT_IMAGE_EXTENSIONS,
) -> Iterator[Path]:
    """Yield the files to score, in a deterministic order, each resolved file at most once.

    ``extensions`` are matched case-insensitively, with or without the leading dot. With
    ``recursive=False`` a folder contributes only the files directly inside it.
    """
    wanted = _normalise_extensions(extensions)
    seen: set[str] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            candidates: Iterable[Path] = _walk_folder(path, wanted, recursive, active=set())
        else:
            candidates = (path,)  # named explicitly: always scored, errors surface at decode time
        for candidate in candidates:
            key = os.path.realpath(candidate)
            if key not in seen:
                seen.add(key)
                yield candidate


def _normalise_extensions(extensions: Iterable[str]) -> frozenset[str]:
    if isinstance(extensions, str):
        raise TypeError("extensions must be a collection of suffixes such as {'.jpg', '.png'}, not one string")
    return frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def _walk_folder(folder: Path, wanted: frozenset[str], recursive: bool, active: set[str]) -> Iterator[Path]:
    """Depth-first, name-sorted walk. ``active`` holds the real paths of the folders on the current
    descent, so a symlink pointing back up the tree does not loop forever."""
    real = os.path.realpath(folder)
    if real in active:
        return
    active.add(real)
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as err:
        # an unreadable folder cannot be listed: say so and go on with the rest of the run
        log.warning("cannot list folder %s (%s); its files are not scored", folder, err.strerror or err)
        entries = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = folder / entry.name
        try:
            is_dir = entry.is_dir()  # follows symlinks
        except OSError:
            is_dir = False
        if is_dir:
            if recursive:
                yield from _walk_folder(path, wanted, recursive, active)
        elif os.path.splitext(entry.name)[1].lower() in wanted:
            yield path
    active.discard(real)
