"""Quality maps: the heat map follows the per-crop scores, and `perceptiq score --map DIR` writes one PNG per
scored image (refusing views without crops before the model loads)."""
from __future__ import annotations

import csv

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from perceptiq.cli.main import app
from perceptiq.imaging.maps import heat_colours, quality_map, score_field

from ..conftest import textured_image

TINY = ["--backbone", "test-tiny", "--weights", "random", "--no-progress", "--device", "cpu", "--workers", "0",
        "--precision", "fp32"]


def test_score_field_is_the_mean_of_the_covering_crops():
    boxes = [(0.0, 0.0, 0.5, 1.0), (0.25, 0.0, 1.0, 1.0)]
    field, covered = score_field((8, 2), boxes, [0.2, 0.6])
    assert covered.all()
    np.testing.assert_allclose(field[0], [0.2, 0.2, 0.4, 0.4, 0.6, 0.6, 0.6, 0.6])


def test_map_is_red_at_the_worst_crop_green_at_the_best_and_plain_outside():
    image = Image.new("RGB", (400, 200), (128, 128, 128))
    boxes = [(0.0, 0.0, 0.25, 0.5), (0.5, 0.0, 0.75, 0.5)]
    out = np.asarray(quality_map(image, boxes, [0.1, 0.9], max_side=400), dtype=int)
    assert out.shape == (200 + 28, 400, 3)
    worst, best, outside = out[90, 10], out[90, 210], out[150, 350]
    assert worst[0] - worst[1] > 40 and best[1] - best[0] > 40
    assert tuple(outside) == (128, 128, 128)
    flipped = np.asarray(quality_map(image, boxes, [0.1, 0.9], max_side=400, higher_is_better=False), dtype=int)
    assert flipped[90, 10][1] - flipped[90, 10][0] > 40                      # lower is better: 0.1 is best
    np.testing.assert_allclose(heat_colours(np.array([0.0, 1.0])), [[215, 48, 39], [26, 152, 80]])


def test_score_map_writes_one_png_per_scored_image(tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    textured_image(1, (500, 300)).save(photos / "a.png")
    textured_image(2, (300, 400)).save(photos / "sub" / "a.jpg")            # same stem: a-2.png
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    out, maps = tmp_path / "scores.csv", tmp_path / "maps"
    result = CliRunner().invoke(app, ["score", str(photos), *TINY, "--view", "crops:6", "--map", str(maps),
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in maps.iterdir()) == ["a-2.png", "a.png"]
    assert "wrote 2 quality map(s)" in result.output
    first = Image.open(maps / "a.png")
    assert first.size == (500, 300 + 28)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3 and sum(1 for r in rows if r["error"]) == 1


def test_score_map_needs_a_crops_view(tmp_path):
    textured_image(1, (300, 300)).save(tmp_path / "a.png")
    refused = CliRunner().invoke(app, ["score", str(tmp_path / "a.png"), *TINY, "--view", "full",
                                       "--map", str(tmp_path / "maps")])
    assert refused.exit_code == 2 and "--map needs per-crop scores" in refused.output
    default = CliRunner().invoke(app, ["score", str(tmp_path / "a.png"), *TINY, "--map", str(tmp_path / "m2")])
    assert default.exit_code == 2 and "view is resize" in default.output
