"""The HTTP service: scores match the model, concurrent requests share forward passes, every refusal
has its status code and names the file, the token is enforced, and model metadata is served."""
from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from perceptiq.inference import load_model  # noqa: E402
from perceptiq.models import ScoreOutput  # noqa: E402
from perceptiq.prompts import scene_names  # noqa: E402
from perceptiq.serving import MicroBatcher, create_app  # noqa: E402

MAX_PIXELS = 100_000        # small, so a 400x300 image is "over pixel limit"
MAX_FILES = 4
MAX_UPLOAD_BYTES = 60_000


def image_bytes(seed: int, size=(80, 64), fmt="PNG") -> bytes:
    """A different smooth-plus-noise picture per seed, encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w * 255, yy / h * 255, 128 + 100 * np.sin(xx / (2 + seed))], axis=-1)
    base += rng.normal(0, 20, base.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def build_assessor(task=None, scene=None):
    return load_model(backbone="test-tiny", weights="random", task=task, scene=scene, precision="fp32",
                      max_pixels=MAX_PIXELS)


@pytest.fixture(scope="module")
def assessor():
    return build_assessor()


def reference_score(assessor, data: bytes) -> float:
    """The score of one image scored alone, without the service."""
    return float(assessor.predict(assessor.preprocess(data).unsqueeze(0)).scores[0])


class CountingAssessor:
    """The real assessor, with every ``predict`` call and its batch size recorded."""

    def __init__(self, inner):
        self._inner = inner
        self.batch_sizes: list[int] = []

    def predict(self, pixels: torch.Tensor) -> ScoreOutput:
        self.batch_sizes.append(len(pixels))
        return self._inner.predict(pixels)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def files_field(*named: tuple[str, bytes]) -> list:
    return [("files", (name, data, "application/octet-stream")) for name, data in named]


@pytest.fixture(scope="module")
def client(assessor):
    app = create_app(assessor, max_files=MAX_FILES, max_upload_bytes=MAX_UPLOAD_BYTES)
    with TestClient(app) as test_client:
        yield test_client


# scoring -------------------------------------------------------------------------------------------
def test_one_image_gets_the_models_score(client, assessor):
    data = image_bytes(1)
    response = client.post("/v1/score", files=files_field(("cat.png", data)))
    assert response.status_code == 200
    body = response.json()
    assert [r["filename"] for r in body["results"]] == ["cat.png"]
    assert body["results"][0]["score"] == pytest.approx(reference_score(assessor, data), abs=1e-5)
    assert body["results"][0]["scene"] is None
    assert body["model"] == {"model": "zero-shot", "backbone": "test-tiny", "weights": "random",
                             "task": "quality", "scene": None, "score_range": [0.0, 1.0],
                             "higher_is_better": True}


def test_several_images_come_back_in_upload_order(client, assessor):
    uploads = [(f"img{i}.{fmt.lower()}", image_bytes(i, fmt=fmt)) for i, fmt in
               enumerate(["PNG", "JPEG", "PNG"])]
    response = client.post("/v1/score", files=files_field(*uploads))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["filename"] for r in results] == [name for name, _ in uploads]
    expected = [reference_score(assessor, data) for _, data in uploads]
    np.testing.assert_allclose([r["score"] for r in results], expected, atol=1e-5)


def test_concurrent_requests_share_forward_passes_and_keep_their_own_scores(assessor):
    counting = CountingAssessor(assessor)
    images_per_request = [1, 2, 1, 1, 2, 1]
    n_images = sum(images_per_request)
    # the batch fills with exactly n_images, so the long wait is never reached when batching works
    app = create_app(counting, max_batch=n_images, max_wait_ms=10_000)
    requests, seed = [], 100
    for count in images_per_request:
        requests.append([(f"r{len(requests)}-{k}.png", image_bytes(seed + k)) for k in range(count)])
        seed += count
    expected = [[reference_score(assessor, data) for _, data in req] for req in requests]
    flat = sorted(s for scores in expected for s in scores)
    assert min(np.diff(flat)) > 1e-4, "test images must score differently for a mix-up to show"

    async def send_all():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(*(http.post("/v1/score", files=files_field(*req)) for req in requests))

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * len(requests)
    for request, response, scores in zip(requests, responses, expected):
        results = response.json()["results"]
        assert [r["filename"] for r in results] == [name for name, _ in request]
        np.testing.assert_allclose([r["score"] for r in results], scores, atol=1e-5)
    assert counting.batch_sizes == [n_images]
    assert len(counting.batch_sizes) < len(requests)


def test_batcher_splits_a_long_queue_into_batches_of_at_most_max_batch():
    seen: list[int] = []

    def predict(pixels):  # score = the image's first pixel value, so each result can be checked
        seen.append(len(pixels))
        return ScoreOutput(pixels[:, 0, 0, 0].clone(), None)

    async def run():
        batcher = MicroBatcher(predict, max_batch=4, max_wait_ms=0)
        images = [torch.full((3, 2, 2), float(i)) for i in range(10)]
        results = await batcher.score(images)
        await batcher.close()
        return results

    results = asyncio.run(run())
    assert [r.score for r in results] == [float(i) for i in range(10)]
    assert seen == [4, 4, 2]


def test_batcher_fails_only_the_requests_of_a_failing_batch():
    def predict(pixels):
        if (pixels < 0).any():
            raise RuntimeError("model blew up")
        return ScoreOutput(pixels[:, 0, 0, 0].clone(), None)

    async def run():
        batcher = MicroBatcher(predict, max_batch=1, max_wait_ms=0)
        bad = batcher.score([torch.full((3, 2, 2), -1.0)])
        good = batcher.score([torch.full((3, 2, 2), 5.0)])
        outcomes = await asyncio.gather(bad, good, return_exceptions=True)
        await batcher.close()
        return outcomes

    bad, good = asyncio.run(run())
    assert isinstance(bad, RuntimeError) and "blew up" in str(bad)
    assert good[0].score == 5.0


# refusals ------------------------------------------------------------------------------------------
def assert_refused(response, status: int, filename: str | None, reason: str):
    assert response.status_code == status, response.text
    body = response.json()
    assert reason in body["detail"]
    if filename is not None:
        assert filename in body["detail"]
        assert [e["filename"] for e in body["errors"]] == [filename]
        assert reason in body["errors"][0]["error"]


def assert_answered_per_file(response, expected: list[tuple[str, float | None, str | None]]):
    """200, one result per upload in order: (filename, reference score or None, error text or None)."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["filename"] for r in body["results"]] == [name for name, _, _ in expected]
    for result, (name, score, error) in zip(body["results"], expected):
        if error is None:
            assert result["error"] is None and result["score"] == pytest.approx(score, abs=1e-5), name
        else:
            assert result["score"] is None and result["scene"] is None and error in result["error"], name
    n_failed = sum(error is not None for _, _, error in expected)
    assert (body["scored"], body["failed"]) == (len(expected) - n_failed, n_failed)


def test_a_bad_file_among_good_ones_gets_an_error_entry_and_the_good_ones_keep_their_scores(client, assessor):
    good = [image_bytes(1), image_bytes(2, fmt="JPEG")]
    response = client.post("/v1/score", files=files_field(        # MAX_FILES = 4
        ("ok.png", good[0]), ("notes.txt", b"just some text, no pixels"), ("ok2.jpg", good[1]),
        ("huge.png", b"\0" * (MAX_UPLOAD_BYTES + 1))))
    assert_answered_per_file(response, [
        ("ok.png", reference_score(assessor, good[0]), None), ("notes.txt", None, "not an image"),
        ("ok2.jpg", reference_score(assessor, good[1]), None), ("huge.png", None, "over upload limit")])
    truncated = image_bytes(3, size=(200, 160), fmt="JPEG")
    response = client.post("/v1/score", files=files_field(("cut.jpg", truncated[: len(truncated) // 2]),
                                                          ("ok.png", good[0])))
    assert_answered_per_file(response, [("cut.jpg", None, "corrupt or truncated"),
                                        ("ok.png", reference_score(assessor, good[0]), None)])


def test_non_image_upload_alone_is_422_naming_the_file(client):
    response = client.post("/v1/score", files=files_field(("notes.txt", b"just some text, no pixels")))
    assert_refused(response, 422, "notes.txt", "not an image")


def test_truncated_image_is_422_naming_the_file(client):
    data = image_bytes(2, size=(200, 160), fmt="JPEG")
    response = client.post("/v1/score", files=files_field(("cut.jpg", data[: len(data) // 2])))
    assert_refused(response, 422, "cut.jpg", "corrupt or truncated")


def test_nothing_scorable_names_every_file_413_only_when_all_are_too_large(client):
    too_large = client.post("/v1/score", files=files_field(("huge.png", b"\0" * (MAX_UPLOAD_BYTES + 1))))
    assert_refused(too_large, 413, "huge.png", "over upload limit")
    mixed = client.post("/v1/score", files=files_field(("huge.png", b"\0" * (MAX_UPLOAD_BYTES + 1)),
                                                       ("notes.txt", b"text")))
    assert mixed.status_code == 422
    assert [(e["filename"], e["error"][:10]) for e in mixed.json()["errors"]] == [
        ("huge.png", "over uploa"), ("notes.txt", "not an ima")]


def test_request_body_over_the_total_limit_is_413(client):
    too_much = client.app.state.limits.max_body_bytes + 1
    response = client.post("/v1/score", files=files_field(("big.png", b"\0" * too_much)))
    assert_refused(response, 413, None, "over the limit")


def test_streamed_body_without_length_is_cut_off_at_the_total_limit(client):
    """A chunked upload declares no Content-Length: the limit is enforced while the body streams in."""
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="endless.png"\r\n\r\n'
            ).encode() + b"\0" * (client.app.state.limits.max_body_bytes + 1) + f"\r\n--{boundary}--\r\n".encode()

    def chunks():
        for start in range(0, len(body), 1 << 16):
            yield body[start:start + (1 << 16)]

    response = client.post("/v1/score", content=chunks(),
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_refused(response, 413, None, "over the limit")


def test_image_over_the_pixel_limit_is_413_naming_the_file(client):
    data = image_bytes(3, size=(400, 300))  # 120,000 px > MAX_PIXELS
    assert len(data) < MAX_UPLOAD_BYTES * 10
    app = create_app(client.app.state.variants.default.assessor, max_upload_bytes=10 * MAX_UPLOAD_BYTES)
    with TestClient(app) as big_client:
        response = big_client.post("/v1/score", files=files_field(("wide.png", data)))
    assert_refused(response, 413, "wide.png", "over pixel limit")


def test_too_many_files_is_413(client):
    uploads = [(f"f{i}.png", image_bytes(i)) for i in range(MAX_FILES + 1)]
    response = client.post("/v1/score", files=files_field(*uploads))
    assert_refused(response, 413, None, f"at most {MAX_FILES}")


def test_request_without_files_is_400_and_non_multipart_is_415(client):
    only_text = client.post("/v1/score", files=[("task", (None, "quality"))])  # multipart, no file
    assert_refused(only_text, 400, None, "no images")
    assert_refused(client.post("/v1/score", json={"path": "/etc/passwd"}), 415, None, "multipart/form-data")


def test_service_keeps_serving_after_refusals(client, assessor):
    client.post("/v1/score", files=files_field(("bad.png", b"garbage")))
    data = image_bytes(7)
    response = client.post("/v1/score", files=files_field(("good.png", data)))
    assert response.status_code == 200
    assert response.json()["results"][0]["score"] == pytest.approx(reference_score(assessor, data), abs=1e-5)


# token ---------------------------------------------------------------------------------------------
def test_token_is_required_on_v1_when_configured(assessor):
    app = create_app(assessor, token="s3cret-token")
    upload = files_field(("a.png", image_bytes(1)))
    with TestClient(app) as token_client:
        missing = token_client.post("/v1/score", files=upload)
        wrong = token_client.post("/v1/score", files=upload, headers={"Authorization": "Bearer nope"})
        right = token_client.post("/v1/score", files=upload, headers={"Authorization": "Bearer s3cret-token"})
        models_without = token_client.get("/v1/models")
        models_with = token_client.get("/v1/models", headers={"Authorization": "Bearer s3cret-token"})
        health = token_client.get("/healthz")
    assert_refused(missing, 401, None, "missing bearer token")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_refused(wrong, 401, None, "wrong bearer token")
    assert right.status_code == 200 and len(right.json()["results"]) == 1
    assert models_without.status_code == 401 and models_with.status_code == 200
    assert health.status_code == 200 and health.json() == {"status": "ok", "token_required": True}


# metadata, page, docs ------------------------------------------------------------------------------
def test_models_endpoint_describes_the_loaded_model(client, assessor):
    body = client.get("/v1/models").json()
    described = assessor.describe()
    for key in ("model", "backbone", "weights", "task", "scene", "prompts", "score_range", "higher_is_better"):
        assert body[key] == described[key], key
    assert body["backbone"] == "test-tiny" and body["weights"] == "random"
    assert body["tasks"] == ["quality", "aesthetics"]
    assert set(body["scenes"]) == set(scene_names()) | {"auto"}
    assert body["variants"] == "fixed"
    assert body["limits"]["max_files"] == MAX_FILES
    assert body["limits"]["max_upload_bytes"] == MAX_UPLOAD_BYTES
    assert body["limits"]["max_pixels"] == MAX_PIXELS


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "token_required": False}


def test_page_and_its_assets_are_served_without_outside_urls(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="file-input"' in page.text
    for asset in ("static/app.js", "static/style.css"):
        response = client.get("/" + asset)
        assert response.status_code == 200
        assert asset in page.text
        assert "http://" not in response.text and "https://" not in response.text
    assert "http://" not in page.text and "https://" not in page.text


def test_openapi_and_docs_work_offline(client):
    schema = client.get("/openapi.json").json()
    assert {"/v1/score", "/v1/models", "/healthz"} <= set(schema["paths"])
    body = schema["paths"]["/v1/score"]["post"]["requestBody"]["content"]
    assert "files" in body["multipart/form-data"]["schema"]["properties"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    try:
        import fastapi_offline  # noqa: F401
    except ImportError:
        pytest.skip("fastapi-offline is not installed: /docs loads Swagger UI from a CDN")
    assert "cdn." not in docs.text
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


# task/scene variants -------------------------------------------------------------------------------
def test_fixed_model_refuses_another_task_but_accepts_its_own(client):
    upload = files_field(("a.png", image_bytes(1)))
    own = client.post("/v1/score", files=upload, data={"task": "quality"})
    other = client.post("/v1/score", files=upload, data={"task": "aesthetics"})
    assert own.status_code == 200
    assert_refused(other, 422, None, "fixed model")


def test_factory_builds_a_variant_on_request_sharing_the_backbone():
    app = create_app(build_assessor)
    data = image_bytes(5)
    with TestClient(app) as factory_client:
        response = factory_client.post("/v1/score", files=files_field(("a.png", data)),
                                       data={"task": "aesthetics", "scene": "auto"})
        unknown = factory_client.post("/v1/score", files=files_field(("a.png", data)),
                                      data={"scene": "moon"})
        models = factory_client.get("/v1/models").json()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["task"] == "aesthetics" and body["model"]["scene"] == "auto"
    direct = build_assessor("aesthetics", "auto")
    direct_out = direct.predict(direct.preprocess(data).unsqueeze(0))
    assert body["results"][0]["score"] == pytest.approx(float(direct_out.scores[0]), abs=1e-5)
    assert body["results"][0]["scene"] == direct_out.scenes[0]
    assert_refused(unknown, 422, None, "scene 'moon'")
    assert models["variants"] == "built on request"
    assert {(v["task"], v["scene"]) for v in models["loaded_variants"]} == {("quality", None),
                                                                             ("aesthetics", "auto")}
    default, variant = (v.assessor.module for v in app.state.variants.loaded)
    shared = [name for name, p in variant.named_parameters()
              if p is dict(default.named_parameters()).get(name)]
    n_backbone = sum(1 for name, _ in variant.named_parameters() if name.startswith("backbone."))
    assert n_backbone > 0 and len(shared) == n_backbone
    assert not torch.equal(default.level_features, variant.level_features[0])  # own prompts kept
