"""The pristine photograph table and its assembly: the shipped table's promises, the processing rule, the
readers of each kind of source (built locally: a .deb, a wheel, a git repository — no network), and the
assembler with fake sources (checksums, failures, resume)."""
from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from perceptiq.data.pristine import (CONTENT_TAGS, PhotoRejected, PhotoUnavailable, ProcessingRule,
                                     SourceUnavailable, TableError, assemble, load_table, prepare_photo)
from perceptiq.data.pristine import sources
from perceptiq.data.pristine.table import Collection, Photo


def photo_bytes(width: int, height: int, fmt: str = "JPEG", quality: int = 95, mode: str = "RGB", seed: int = 0) -> bytes:
    """A textured test picture (smooth gradient + noise), encoded."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 / width), (y * 255 / height), ((x + y) * 127 / (width + height))], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    picture = Image.fromarray(pixels)
    if mode != "RGB":
        picture = picture.convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the shipped table ------------------------------------------------------------------------------------
def test_shipped_table_meets_the_issue_s_data_requirements():
    table = load_table()
    train, heldout = table.select("train"), table.select("heldout")
    assert len(train) >= 220 and len(heldout) >= 25
    # at least two training sources, none of them a source of the held-out photographs
    train_collections = {p.collection for p in train}
    heldout_collections = {p.collection for p in heldout}
    assert len(train_collections) >= 2
    train_origins = {c.url or c.package for c in train_collections}
    assert not train_origins & {c.url or c.package for c in heldout_collections}
    # the held-out source is Unsplash; no training photograph comes from Unsplash
    assert all(p.licence == "Unsplash License" for p in heldout)
    assert not [p.path for p in train if "unsplash" in p.path.lower()]
    # every photograph names a licence and is checksummed; varied content
    assert all(p.licence and len(p.sha256) == 64 for p in table.photos)
    assert len({p.content for p in train}) >= 8
    assert len({p.relative_file for p in table.photos}) == len(table.photos)
    # no source file appears twice (the same bytes under two names would be a duplicate photograph)
    assert len({p.sha256 for p in table.photos}) == len(table.photos)


def test_table_errors_name_the_file_and_line(tmp_path):
    collections, photos = _small_table_files(tmp_path, rows=[("fake-git", "a.jpg", "0" * 64, "a", "nature", "")])
    text = photos.read_text().replace("nature", "landscape")
    photos.write_text(text)
    with pytest.raises(TableError, match=r"photos\.csv:2: content must be one of"):
        load_table(collections, photos)
    photos.write_text(text.replace("fake-git", "nowhere"))
    with pytest.raises(TableError, match=r"photos\.csv:2: unknown collection 'nowhere'"):
        load_table(collections, photos)


# -- the processing rule ----------------------------------------------------------------------------------
def test_rule_shrinks_to_the_longest_side_and_low_quality_jpegs_at_least_twice():
    rule = ProcessingRule()
    assert rule.target_size(4096, 2304, 90) == (2048, 1152)
    assert rule.target_size(1600, 1200, None) == (1600, 1200)        # never enlarged
    assert rule.target_size(1600, 1200, 70) == (800, 600)            # q < 80: at least 2x
    assert rule.target_size(5000, 2500, 70) == (2048, 1024)          # already more than 2x


def test_prepare_photo_shrinks_keeps_grey_and_rejects_cutouts_and_small_images():
    rule = ProcessingRule(max_side=256, min_short_side=100)  # small numbers: the same code, fast pixels
    picture, original = prepare_photo(photo_bytes(600, 400, quality=95), 95, rule)
    assert original == (600, 400) and picture.size == (256, 171) and picture.mode == "RGB"
    picture, _ = prepare_photo(photo_bytes(240, 200, quality=70), 70, rule)
    assert picture.size == (120, 100)
    grey, _ = prepare_photo(photo_bytes(200, 150, fmt="PNG", mode="L"), None, rule)
    assert grey.mode == "L" and grey.size == (200, 150)
    rgba = Image.new("RGBA", (200, 150), (10, 20, 30, 255))
    rgba.putpixel((5, 5), (0, 0, 0, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    with pytest.raises(PhotoRejected, match="transparent"):
        prepare_photo(buffer.getvalue(), None, rule)
    with pytest.raises(PhotoRejected, match="short side 90"):
        prepare_photo(photo_bytes(180, 180, quality=70), 70, rule)


# -- sources, built locally ---------------------------------------------------------------------------------
def _ar(members: dict[str, bytes]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode("ascii")
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def _deb(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as archive:
        for path, data in files.items():
            info = tarfile.TarInfo("./" + path)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return _ar({"debian-binary": b"2.0\n", "control.tar.xz": b"", "data.tar.xz": buffer.getvalue()})


def test_debian_source_reads_a_cached_deb_and_locates_a_failed_download(tmp_path, monkeypatch):
    image = photo_bytes(64, 48)
    collection = Collection(name="deb-photos", kind="debian", role="train", licence="CC0-1.0",
                            package="some-wallpapers", version="1:2.0-1")
    (tmp_path / "debian").mkdir()
    (tmp_path / "debian" / "some-wallpapers_1%3a2.0-1_all.deb").write_bytes(
        _deb({"usr/share/backgrounds/a.jpg": image}))
    opened = sources.open_debian(collection, tmp_path)
    photo = Photo(collection, "usr/share/backgrounds/a.jpg", sha(image), "a", "CC0-1.0", "nature", 95)
    assert opened.read(photo) == image
    with pytest.raises(PhotoUnavailable, match="b.jpg is not in Debian package some-wallpapers=1:2.0-1"):
        opened.read(Photo(collection, "usr/share/backgrounds/b.jpg", sha(image), "b", "CC0-1.0", "nature", 95))

    other = Collection(name="deb-missing", kind="debian", role="train", licence="CC0-1.0", package="gone",
                       version="1.0")
    monkeypatch.setattr(sources.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(sources, "_run", lambda command, cwd=None: subprocess.CompletedProcess(
        command, 100, "", "E: Version '1.0' for 'gone' was not found"))
    with pytest.raises(SourceUnavailable, match=r"collection 'deb-missing' \(Debian package gone=1.0.*"
                                                r"apt-get download gone=1.0` failed: E: Version '1.0'"):
        sources.open_debian(other, tmp_path)


def test_pypi_source_reads_the_installed_distribution_or_a_cached_wheel(tmp_path):
    import importlib.metadata

    version = importlib.metadata.version("PyYAML")
    installed = Collection(name="yaml", kind="pypi", role="train", licence="MIT", package="PyYAML", version=version)
    opened = sources.open_pypi(installed, tmp_path)
    code = Path(yaml.__file__).read_bytes()
    assert opened.read(Photo(installed, "yaml/__init__.py", sha(code), "x", "MIT", "text", None)) == code

    image = photo_bytes(64, 64, fmt="PNG")
    (tmp_path / "pypi").mkdir()
    with zipfile.ZipFile(tmp_path / "pypi" / "not_installed_photos-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("not_installed_photos/data/p.png", image)
    cached = Collection(name="wheel", kind="pypi", role="train", licence="CC0-1.0", package="not-installed-photos",
                        version="1.0")
    opened = sources.open_pypi(cached, tmp_path)
    assert opened.read(Photo(cached, "not_installed_photos/data/p.png", sha(image), "p", "CC0-1.0", "texture",
                             None)) == image


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_git_source_clones_and_reads_a_file_at_a_commit(tmp_path):
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    _git("init", "-q", cwd=upstream)
    first, second = photo_bytes(64, 48, seed=1), photo_bytes(64, 48, seed=2)
    (upstream / "p.jpg").write_bytes(first)
    _git("add", "p.jpg", cwd=upstream)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one", cwd=upstream)
    old = subprocess.run(["git", "rev-parse", "HEAD"], cwd=upstream, capture_output=True, text=True).stdout.strip()
    (upstream / "p.jpg").write_bytes(second)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", "two", cwd=upstream)
    new = subprocess.run(["git", "rev-parse", "HEAD"], cwd=upstream, capture_output=True, text=True).stdout.strip()

    collection = Collection(name="repo", kind="git", role="train", licence="CC0-1.0", url=str(upstream), commit=new)
    opened = sources.open_git(collection, tmp_path / "cache")
    assert opened.read(Photo(collection, "p.jpg", sha(second), "p", "CC0-1.0", "nature", 95, commit=new)) == second
    assert opened.read(Photo(collection, "p.jpg", sha(first), "p", "CC0-1.0", "nature", 95, commit=old)) == first

    gone = Collection(name="gone", kind="git", role="heldout", licence="CC0-1.0", url=str(tmp_path / "nothing"),
                      commit=new)
    with pytest.raises(SourceUnavailable, match=r"collection 'gone' \(git repository .*nothing at [0-9a-f]{40}.*"
                                                r"git clone .*` failed"):
        sources.open_git(gone, tmp_path / "cache")


# -- the assembler with fake sources --------------------------------------------------------------------------
def _small_table_files(folder: Path, rows):
    collections = folder / "collections.yaml"
    collections.write_text(yaml.safe_dump({
        "processing": {"max_side": 256, "min_short_side": 100},
        "collections": {
            "fake-git": {"kind": "git", "url": "https://example.invalid/o/photos.git", "commit": "a" * 40,
                         "role": "train", "licence": "CC0-1.0"},
            "fake-deb": {"kind": "debian", "package": "fake-wallpapers", "version": "1.0", "role": "train",
                         "licence": "GPL-2.0-or-later"},
            "fake-heldout": {"kind": "pypi", "package": "fake-photos", "version": "2.0", "role": "heldout",
                             "licence": "Unsplash License"},
        }}))
    photos = folder / "photos.csv"
    with photos.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["collection", "path", "commit", "sha256", "name", "licence", "content", "jpeg_quality"])
        for collection, path, digest, name, content, quality in rows:
            writer.writerow([collection, path, "", digest, name, "CC0-1.0", content, quality])
    return collections, photos


class FakeSource:
    def __init__(self, files: dict[str, bytes]):
        self.files = files

    def read(self, photo):
        if photo.path not in self.files:
            raise PhotoUnavailable(f"{photo.path} missing")
        return self.files[photo.path]


def test_assemble_checks_shrinks_records_failures_and_resumes(tmp_path):
    big, low, held = photo_bytes(500, 375, quality=92, seed=3), photo_bytes(400, 300, quality=70, seed=4), \
        photo_bytes(200, 150, fmt="PNG", seed=5)
    rows = [("fake-git", "big.jpg", sha(big), "big", "nature", 92),
            ("fake-git", "low.jpg", sha(low), "low", "city", 70),
            ("fake-git", "tampered.jpg", sha(b"other bytes"), "tampered", "plant", 92),
            ("fake-deb", "usr/x.jpg", sha(big), "deb_x", "texture", 92),
            ("fake-heldout", "held.png", sha(held), "held", "animal", "")]
    table = load_table(*_small_table_files(tmp_path, rows))
    opened = []

    def open_fake(collection, cache):
        opened.append(collection.name)
        return FakeSource({"big.jpg": big, "low.jpg": low, "tampered.jpg": big, "held.png": held})

    def unreachable(collection, cache):
        raise SourceUnavailable(f"collection '{collection.name}' ({collection.describe()}): apt-get failed")

    openers = {"git": open_fake, "pypi": open_fake, "debian": unreachable}
    dest = tmp_path / "photos"
    result = assemble(table, dest, cache=tmp_path / "cache", openers=openers)

    assert sorted(r.file for r in result.rows) == ["heldout/held.png", "train/big.png", "train/low.png"]
    assert Image.open(dest / "train/big.png").size == (256, 192)          # max_side 256
    assert Image.open(dest / "train/low.png").size == (200, 150)          # q70: at least 2x
    assert Image.open(dest / "heldout/held.png").size == (200, 150)       # lossless, small: unchanged
    failures = {f.file: f.error for f in result.failures}
    assert "differs from the table's" in failures["train/tampered.png"] and "photos.csv line 4" in failures["train/tampered.png"]
    assert "collection 'fake-deb' (Debian package fake-wallpapers=1.0): apt-get failed" in failures["train/deb_x.png"]
    manifest = list(csv.DictReader((dest / "manifest.csv").open()))
    assert [m["file"] for m in manifest] == ["train/big.png", "train/low.png", "heldout/held.png"]
    low_row = manifest[1]
    assert low_row["downscale"] == "2.000" and low_row["jpeg_quality"] == "70" and low_row["content"] == "city"
    assert low_row["source"] == f"git:o/photos@{'a' * 40}:low.jpg"
    assert low_row["sha256"] == sha((dest / "train/low.png").read_bytes())
    assert len(list(csv.DictReader((dest / "failures.csv").open()))) == 2

    # resume: the three good photographs are kept (no source opened for them), the failures are tried again
    opened.clear()
    again = assemble(table, dest, cache=tmp_path / "cache", openers=openers, resume=True)
    assert again.reused == 3 and again.written == 0 and opened == ["fake-git"]
    # a stored file that changed is fetched again
    (dest / "train/big.png").write_bytes(b"corrupt")
    third = assemble(table, dest, cache=tmp_path / "cache", openers=openers, resume=True, role="train")
    assert third.written == 1 and third.reused == 1
    assert {r.file for r in third.rows} == {"train/big.png", "train/low.png", "heldout/held.png"}


def test_content_tags_are_the_issue_s_kinds():
    for needed in ("people", "nature", "city", "indoor", "night", "texture", "text"):
        assert needed in CONTENT_TAGS


def test_pristine_is_data_and_imports_no_model_code():
    import subprocess as run
    import sys

    probe = ("import sys, perceptiq.data.pristine; "
             "print([m for m in ('torch', 'open_clip', 'perceptiq.models', 'perceptiq.training') if m in sys.modules])")
    done = run.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
