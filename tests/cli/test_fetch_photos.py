"""``perceptiq fetch-photos``: assembling the pristine photographs, with fake sources (no network)."""
from __future__ import annotations

import csv

from PIL import Image
from typer.testing import CliRunner

import perceptiq.data.pristine as pristine
from perceptiq.cli.main import app
from perceptiq.data.pristine import SourceUnavailable, load_table
from perceptiq.data.pristine import sources

from ..data.test_pristine import FakeSource, _small_table_files, photo_bytes, sha

runner = CliRunner()


def test_fetch_photos_writes_the_selected_role_and_a_manifest(tmp_path, monkeypatch):
    train, held = photo_bytes(400, 300, quality=95, seed=1), photo_bytes(200, 150, fmt="PNG", seed=2)
    table = load_table(*_small_table_files(tmp_path, [("fake-git", "t.jpg", sha(train), "t", "nature", 95),
                                                      ("fake-heldout", "h.png", sha(held), "h", "animal", "")]))
    monkeypatch.setattr(pristine, "load_table", lambda: table)
    fake = lambda collection, cache: FakeSource({"t.jpg": train, "h.png": held})  # noqa: E731
    monkeypatch.setitem(sources.OPENERS, "git", fake)
    monkeypatch.setitem(sources.OPENERS, "pypi", fake)
    out = tmp_path / "photos"
    result = runner.invoke(app, ["fetch-photos", "-o", str(out), "--role", "heldout", "--no-progress",
                                 "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "wrote 1 photographs" in result.output
    assert Image.open(out / "heldout" / "h.png").size == (200, 150) and not (out / "train").exists()
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert [(r["file"], r["role"], r["licence"]) for r in rows] == [("heldout/h.png", "heldout", "CC0-1.0")]

    again = runner.invoke(app, ["fetch-photos", "-o", str(out), "--no-progress"])
    assert again.exit_code == 2 and "exists and is not empty; add --overwrite" in again.output
    resumed = runner.invoke(app, ["fetch-photos", "-o", str(out), "--resume", "--no-progress",
                                  "--cache", str(tmp_path / "cache")])
    assert resumed.exit_code == 0, resumed.output
    assert "wrote 1 photographs" in resumed.output and "1 kept from before" in resumed.output
    assert {r["file"] for r in csv.DictReader((out / "manifest.csv").open())} == {"heldout/h.png", "train/t.png"}


def test_an_unreachable_source_is_a_located_error_and_exit_code_1(tmp_path, monkeypatch):
    def offline(collection, cache):
        raise SourceUnavailable(f"collection '{collection.name}' ({collection.describe()}): `git clone "
                                f"{collection.url}` failed: Could not resolve host")

    monkeypatch.setitem(sources.OPENERS, "git", offline)
    out = tmp_path / "held"
    result = runner.invoke(app, ["fetch-photos", "-o", str(out), "--role", "heldout", "--no-progress"])
    held_out = load_table().count("heldout")
    assert result.exit_code == 1
    assert f"{held_out} of {held_out} photographs could not be assembled" in result.output
    assert "collection 'unsplash-test-files' (git repository https://github.com/SqueezeSoftware/test_files.git" \
           in result.output and "Could not resolve host" in result.output
    assert len(list(csv.DictReader((out / "failures.csv").open()))) == held_out


def test_role_is_a_checked_choice():
    result = runner.invoke(app, ["fetch-photos", "-o", "x", "--role", "test"])
    assert result.exit_code == 2 and "test" in result.output
