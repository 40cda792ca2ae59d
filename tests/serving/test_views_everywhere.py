"""One image, one view, one score: the command line, the Python API, the HTTP service and the Ray engine
agree for resize, native crops and the full view (issue 12), and the view is checked at every door."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
ray = pytest.importorskip("ray", reason="Ray is not installed (optional extra: pip install 'perceptiq[ray]')")
from fastapi.testclient import TestClient  # noqa: E402

from perceptiq.cli.main import app as cli  # noqa: E402
from perceptiq.inference import load_model  # noqa: E402
from perceptiq.inference.ray_engine import connect, score_with_ray  # noqa: E402
from perceptiq.inference.writers import read_result_rows  # noqa: E402
from perceptiq.serving import create_app  # noqa: E402

from ..conftest import textured_image  # noqa: E402

MODEL = {"model": "zero-shot", "backbone": "test-tiny", "weights": "random"}
VIEWS = ["resize", "crops:3,random,seed=4", "crops:4", "full"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("views_everywhere")
    for i, size in enumerate([(520, 340), (300, 450), (333, 250)]):
        textured_image(20 + i, size).save(root / f"p{i}.{'png' if i % 2 else 'jpg'}", quality=92)
    return root


@pytest.fixture(scope="module")
def ray_session():
    assert connect(num_cpus=2)
    yield
    ray.shutdown()


@pytest.mark.parametrize("view", VIEWS)
def test_cli_api_service_and_ray_give_one_score_per_image_and_view(photos, tmp_path, ray_session, view):
    files = sorted(str(p) for p in photos.iterdir())
    assessor = load_model(**MODEL, device="cpu", precision="fp32", view=view)
    api = dict(zip(files, assessor.score(files).scores))
    assert len(api) == 3 and np.isfinite(list(api.values())).all()

    out = tmp_path / "cli.csv"
    result = CliRunner().invoke(cli, ["score", str(photos), "--backbone", "test-tiny", "--weights", "random",
                                      "--precision", "fp32", "--device", "cpu", "--workers", "0", "--no-progress",
                                      "--view", view, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert f"view {view}" in result.output
    from_cli = {row["path"]: float(row["score"]) for row in csv.DictReader(out.open())}

    client = TestClient(create_app(load_model(**MODEL, device="cpu", precision="fp32")))
    response = client.post("/v1/score", data={"view": view},
                           files=[("files", (f, open(f, "rb").read())) for f in files])
    assert response.status_code == 200, response.text
    assert response.json()["view"] == view
    from_service = {f: r["score"] for f, r in zip(files, response.json()["results"])}

    sources = [("cli", from_cli), ("service", from_service)]
    if view != "resize":   # resize through Ray: tests/inference/test_ray_engine.py (each Ray run costs ~40 s)
        ray_out = tmp_path / "ray.csv"
        score_with_ray([str(photos)], **MODEL, device="cpu", precision="fp32", batch_size=2, view=view,
                       output=ray_out)
        sources.append(("ray", {r["path"]: r["score"] for r in read_result_rows(ray_out)}))

    for path, expected in api.items():
        for name, got in sources:
            assert got[path] == pytest.approx(expected, abs=1e-5), (name, path)
    if view.startswith("crops"):
        crops = response.json()["results"][0]["crop_scores"]
        assert len(crops) == int(view.split(":")[1].split(",")[0]) and len(set(crops)) == len(crops)


def test_a_bad_view_is_refused_before_any_work(photos):
    result = CliRunner().invoke(cli, ["score", str(photos), "--view", "crops:many", "--no-progress"])
    assert result.exit_code == 2 and "crops needs a count" in result.output
    client = TestClient(create_app(load_model(**MODEL, device="cpu", precision="fp32")))
    response = client.post("/v1/score", data={"view": "zoom"},
                           files=[("files", ("a.png", (photos / "p1.png").read_bytes()))])
    assert response.status_code == 400 and "unknown view 'zoom'" in response.json()["detail"]
