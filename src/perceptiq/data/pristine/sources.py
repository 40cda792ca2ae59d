"""Reading photographs out of their sources: Debian packages, PyPI distributions, git repositories.

Each source is fetched once into a cache folder (``--cache``; default ``~/.cache/perceptiq/pristine``) with the
ordinary clients — ``apt-get download``, ``pip download``, ``git clone`` — and files are read from it by path.
A source that cannot be had raises :class:`SourceUnavailable` naming the collection, the source and the command
that failed; a file that is missing from a source raises :class:`PhotoUnavailable`. Both are caught per
collection / per photograph by the assembler, so one unreachable source never loses the others.
"""
from __future__ import annotations

import importlib.metadata
import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Callable, Optional, Protocol

from .table import COLLECTIONS_FILE, Collection, Photo


class SourceUnavailable(RuntimeError):
    """A whole collection's source could not be fetched or opened (the message says which and why)."""


class PhotoUnavailable(RuntimeError):
    """One file could not be read from an opened source."""


class OpenedSource(Protocol):
    def read(self, photo: Photo) -> bytes:
        """The bytes of ``photo.path`` (at ``photo.commit`` for git); PhotoUnavailable if absent."""


#: kind -> callable(collection, cache folder) -> OpenedSource; tests replace entries with fakes.
Opener = Callable[[Collection, Path], OpenedSource]


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "perceptiq" / "pristine"


def _unavailable(collection: Collection, what: str) -> SourceUnavailable:
    return SourceUnavailable(f"collection '{collection.name}' ({collection.describe()}, declared in "
                             f"{COLLECTIONS_FILE.name}): {what}")


def _run(command: list[str], cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


# -- Debian packages ---------------------------------------------------------------------------------------
def read_ar_members(data: bytes) -> dict[str, bytes]:
    """Members of a Unix ``ar`` archive (the container of a .deb): name -> bytes."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive (a .deb starts with '!<arch>')")
    members, offset = {}, 8
    while offset + 60 <= len(data):
        header = data[offset:offset + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = data[offset + 60:offset + 60 + size]
        offset += 60 + size + (size % 2)  # members are 2-byte aligned
    return members


class DebianPackage:
    """The data archive of one .deb, read with Python's ar/tar readers (dpkg-deb only for zstd archives)."""

    def __init__(self, deb_path: Path, collection: Collection):
        self.collection = collection
        members = read_ar_members(deb_path.read_bytes())
        data_name = next((n for n in members if n.startswith("data.tar")), None)
        if data_name is None:
            raise _unavailable(collection, f"{deb_path} has no data.tar member")
        payload = members[data_name]
        if data_name.endswith(".zst"):
            if shutil.which("dpkg-deb") is None:
                raise _unavailable(collection, f"{deb_path} is zstd-compressed and dpkg-deb is not installed")
            payload = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb_path)], capture_output=True,
                                     check=True).stdout
        self._tar = tarfile.open(fileobj=io.BytesIO(payload))
        self._names = {m.name.lstrip("./"): m for m in self._tar.getmembers() if m.isfile()}

    def read(self, photo: Photo) -> bytes:
        member = self._names.get(photo.path.lstrip("/"))
        if member is None:
            raise PhotoUnavailable(f"{photo.path} is not in {self.collection.describe()}")
        return self._tar.extractfile(member).read()


def deb_file_name(package: str, version: str) -> str:
    """The name `apt-get download` gives a package's .deb, without the architecture (epoch ':' -> '%3a')."""
    return f"{package}_{version.replace(':', '%3a')}_"


def open_debian(collection: Collection, cache: Path) -> DebianPackage:
    folder = Path(cache) / "debian"
    folder.mkdir(parents=True, exist_ok=True)
    prefix = deb_file_name(collection.package, collection.version)
    found = sorted(folder.glob(prefix + "*.deb"))
    if not found:
        if shutil.which("apt-get") is None:
            raise _unavailable(collection, "apt-get is not installed (put the .deb in "
                                           f"{folder} by hand to use it)")
        done = _run(["apt-get", "download", f"{collection.package}={collection.version}"], cwd=folder)
        found = sorted(folder.glob(prefix + "*.deb"))
        if done.returncode != 0 or not found:
            raise _unavailable(collection, f"`apt-get download {collection.package}={collection.version}` "
                                           f"failed: {_last_line(done.stderr or done.stdout)}")
    return DebianPackage(found[0], collection)


# -- PyPI distributions ------------------------------------------------------------------------------------
class InstalledDistribution:
    def __init__(self, distribution: importlib.metadata.Distribution, collection: Collection):
        self.distribution, self.collection = distribution, collection

    def read(self, photo: Photo) -> bytes:
        path = Path(self.distribution.locate_file(photo.path))
        if not path.is_file():
            raise PhotoUnavailable(f"{photo.path} is not in the installed {self.collection.describe()}")
        return path.read_bytes()


class Wheel:
    def __init__(self, wheel_path: Path, collection: Collection):
        self.archive, self.collection = zipfile.ZipFile(wheel_path), collection

    def read(self, photo: Photo) -> bytes:
        try:
            return self.archive.read(photo.path)
        except KeyError:
            raise PhotoUnavailable(f"{photo.path} is not in {self.collection.describe()}") from None


def open_pypi(collection: Collection, cache: Path):
    try:
        installed = importlib.metadata.distribution(collection.package)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed is not None and installed.version == collection.version:
        return InstalledDistribution(installed, collection)
    folder = Path(cache) / "pypi"
    folder.mkdir(parents=True, exist_ok=True)
    stem = collection.package.replace("-", "_")
    found = sorted(folder.glob(f"{stem}-{collection.version}-*.whl"))
    if not found:
        done = _run([sys.executable, "-m", "pip", "download", f"{collection.package}=={collection.version}",
                     "--no-deps", "--only-binary=:all:", "--dest", str(folder), "--quiet"])
        found = sorted(folder.glob(f"{stem}-{collection.version}-*.whl"))
        if done.returncode != 0 or not found:
            raise _unavailable(collection, f"`pip download {collection.package}=={collection.version}` failed: "
                                           f"{_last_line(done.stderr or done.stdout)}")
    return Wheel(found[0], collection)


# -- git repositories --------------------------------------------------------------------------------------
class GitRepository:
    def __init__(self, git_dir: Path, collection: Collection):
        self.git_dir, self.collection = git_dir, collection

    def read(self, photo: Photo) -> bytes:
        done = subprocess.run(["git", "--git-dir", str(self.git_dir), "cat-file", "blob",
                               f"{photo.commit}:{photo.path}"], capture_output=True)
        if done.returncode != 0:
            raise PhotoUnavailable(f"{photo.path} at {photo.commit} is not in {self.git_dir}: "
                                   f"{_last_line(done.stderr.decode(errors='replace'))}")
        return done.stdout


def git_cache_dir(collection: Collection, cache: Path) -> Path:
    return Path(cache) / "git" / (collection.repository or collection.name).replace("/", "+")


def open_git(collection: Collection, cache: Path) -> GitRepository:
    """A bare clone in the cache (``CACHE/git/OWNER+NAME``; an existing git directory there is used as is)."""
    if shutil.which("git") is None:
        raise _unavailable(collection, "git is not installed")
    target = git_cache_dir(collection, cache)
    for candidate in (target, target / "repo", target / ".git"):
        if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
            return GitRepository(candidate, collection)
    target.parent.mkdir(parents=True, exist_ok=True)
    # blob:none: the history without file contents; blobs are fetched when read, so only the listed files come
    done = _run(["git", "clone", "--bare", "--filter=blob:none", "--quiet", collection.url, str(target)])
    if done.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise _unavailable(collection, f"`git clone {collection.url}` failed: {_last_line(done.stderr)}")
    return GitRepository(target, collection)


OPENERS: dict[str, Opener] = {"debian": open_debian, "pypi": open_pypi, "git": open_git}
