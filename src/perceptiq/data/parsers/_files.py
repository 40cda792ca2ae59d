"""Case-insensitive view of a dataset root.

Dataset releases mix case freely (TID2013 has ``i01_01_1.bmp`` next to
``I01_01_1.BMP``; BID ships ``.JPG``), and users unpack them on case-sensitive file
systems. Every relative path a parser names is therefore resolved component by
component against a case-folded listing of each folder, listed once and cached:
together the cached listings form one case-folded index of the root, built lazily so
that a CSV sitting in a large folder does not trigger a walk of unrelated trees.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath


class AmbiguousPathError(FileNotFoundError):
    """Two entries of one folder differ only by case, so a case-insensitive name is ambiguous."""


class CaseInsensitiveRoot:
    """Resolve relative paths under ``root`` ignoring case.

    ``dataset`` is only used in error messages.
    """

    def __init__(self, root: str | Path, dataset: str = "") -> None:
        self.root = Path(root).expanduser().resolve()
        self.dataset = dataset
        self._listings: dict[Path, dict[str, list[str]]] = {}
        self._by_name: dict[str, list[Path]] | None = None
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self._prefix()}dataset root '{self.root}' is not a folder")

    def _prefix(self) -> str:
        return f"{self.dataset}: " if self.dataset else ""

    def _listing(self, folder: Path) -> dict[str, list[str]]:
        listing = self._listings.get(folder)
        if listing is None:
            listing = {}
            try:
                names = os.listdir(folder)
            except (FileNotFoundError, NotADirectoryError):
                names = []
            for name in names:
                listing.setdefault(name.casefold(), []).append(name)
            self._listings[folder] = listing
        return listing

    def resolve(self, relative: str) -> Path | None:
        """The real path of ``relative`` (POSIX separators) or None if absent."""
        current = self.root
        for part in PurePosixPath(relative.replace("\\", "/")).parts:
            if part in ("", "."):
                continue
            if part == "..":
                current = current.parent
                continue
            matches = self._listing(current).get(part.casefold(), [])
            if not matches:
                return None
            if len(matches) > 1:
                if part in matches:
                    current = current / part
                    continue
                raise AmbiguousPathError(
                    f"{self._prefix()}'{relative}' matches several entries differing only by case "
                    f"in '{current}': {sorted(matches)}"
                )
            current = current / matches[0]
        return current

    def require(self, *candidates: str, what: str = "file") -> Path:
        """The first candidate that exists, else FileNotFoundError naming all of them and the root."""
        for candidate in candidates:
            found = self.resolve(candidate)
            if found is not None and found.exists():
                return found
        raise FileNotFoundError(self.missing_message(candidates, what))

    def missing_message(self, candidates: tuple[str, ...] | list[str], what: str = "file") -> str:
        tried = " or ".join(f"'{c}'" for c in candidates)
        return (
            f"{self._prefix()}missing {what} {tried} under root '{self.root}' "
            "(names are matched case-insensitively)"
        )

    def find_by_name(self, name: str) -> Path | None:
        """The unique file called ``name`` (any case) anywhere under the root, or None.

        Walks the root once; raises AmbiguousPathError when several folders hold it.
        """
        if self._by_name is None:
            index: dict[str, list[Path]] = {}
            for folder, _dirs, files in os.walk(self.root):
                for file in files:
                    index.setdefault(file.casefold(), []).append(Path(folder) / file)
            self._by_name = index
        matches = self._by_name.get(name.casefold(), [])
        if len(matches) > 1:
            raise AmbiguousPathError(
                f"{self._prefix()}'{name}' occurs in several folders under '{self.root}': "
                f"{sorted(str(m.relative_to(self.root)) for m in matches)}"
            )
        return matches[0] if matches else None

    def files_in(self, relative_folder: str) -> list[Path]:
        """Files directly inside a folder (case-insensitive folder name), sorted by name."""
        folder = self.require(relative_folder, what="folder")
        return sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.name)
