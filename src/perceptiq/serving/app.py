"""The HTTP service: ``create_app(assessor or factory) -> FastAPI``.

Endpoints (details, limits and status codes in docs/serving.md):

* ``POST /v1/score`` — multipart upload, repeatable field ``files``, optional ``task``, ``scene`` and
  ``view`` (``resize``, ``crops:N[,random]``, ``full``; default the model's); answers
  ``{"results": [{"filename", "score", "scene", "crop_scores", "boxes", "error"}, ...], "scored", "failed",
  "view": ..., "model": {...}}`` in upload order, one result per file (``crop_scores``/``boxes``: each model
  input's score and region, fractions of the image); a file that cannot be scored gets an ``error`` and no
  score, as a row of ``perceptiq score`` does; 422/413 only when no file could be scored.
* ``GET /v1/models`` — the loaded model (backbone, weights, prompts, score range and direction), the
  tasks and scenes a request may ask for, the variants built so far, and the upload limits.
* ``GET /healthz`` — liveness, and whether a token is needed.
* ``GET /`` — the offline web page (static files shipped in this package); ``/openapi.json``;
  ``/docs`` (Swagger UI, served from local files when the ``fastapi-offline`` package is installed).

Uploads are decoded and preprocessed in a thread pool and scored through a :class:`MicroBatcher`, so
the event loop only moves bytes and futures.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import importlib.util
import os
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from ..imaging import ImageDecodeError, ViewError, parse_view
from ..inference.results import mean_score
from ..inference.writers import stored_scores
from .uploads import RequestError, ScoreForm, UploadLimits, read_score_form
from .variants import ModelVariants, Variant, VariantUnavailable

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Decode reasons that mean "too large" (413) rather than "not a usable image" (422).
OVERSIZE_REASONS = frozenset({"over pixel limit", "out of memory while decoding"})
# The model fields every score response repeats, so a client knows what the numbers mean.
RESPONSE_MODEL_FIELDS = ("model", "backbone", "weights", "task", "scene", "score_range", "higher_is_better")

_SCORE_REQUEST_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["files"],
            "properties": {
                "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                          "description": "One or more image files (repeat the field)."},
                "task": {"type": "string", "description": "quality or aesthetics (default: the loaded model's)"},
                "scene": {"type": "string",
                          "description": "a scene name or 'auto' (default: the loaded model's)"},
                "view": {"type": "string",
                         "description": "how an image becomes model input: resize, crops:N[,random][,resize=S]"
                                        "[,seed=K] or full[,max=PIXELS] (default: the loaded model's)"},
            },
        }}},
    },
}


def create_app(source, *, token: str | None = None, max_files: int = 32,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_batch: int = 32,
               max_wait_ms: float = 10.0, decode_threads: int | None = None,
               max_variants: int = 12) -> FastAPI:
    """Build the service around ``source``: an ``Assessor`` (one fixed model) or a factory
    ``(task | None, scene | None) -> Assessor`` (the loaded model is ``factory(None, None)``; other
    task/scene variants are built on first request and share its backbone weights).

    ``token``: when set, ``/v1/*`` needs ``Authorization: Bearer <token>``. ``max_files`` and
    ``max_upload_bytes`` bound one request; ``max_batch``/``max_wait_ms`` tune micro-batching;
    ``decode_threads`` (default min(4, CPUs)) decode uploads; ``max_variants`` caps the models kept.
    """
    limits = UploadLimits(max_files=max_files, max_upload_bytes=max_upload_bytes)
    decode_pool = concurrent.futures.ThreadPoolExecutor(
        decode_threads or min(4, os.cpu_count() or 1), thread_name_prefix="perceptiq-decode")
    predict_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="perceptiq-predict")
    variants = ModelVariants(source, max_batch=max_batch, max_wait_ms=max_wait_ms,
                             predict_executor=predict_pool, max_variants=max_variants)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await variants.close()
        decode_pool.shutdown(wait=False)
        predict_pool.shutdown(wait=False)

    swagger_assets = _local_swagger_assets()
    app = FastAPI(title="perceptiq", version=_version(), lifespan=lifespan, redoc_url=None,
                  docs_url=None if swagger_assets else "/docs",
                  description="CLIP-based image quality and aesthetics scores. See docs/serving.md.")
    app.state.variants = variants
    app.state.limits = limits
    require_token = _token_dependency(token)

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, err: RequestError) -> JSONResponse:
        return JSONResponse({"detail": err.message, "errors": err.errors}, status_code=err.status,
                            headers=err.headers)

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict:
        """Liveness; also says whether ``/v1/*`` needs a bearer token (the web page asks for one then)."""
        return {"status": "ok", "token_required": token is not None}

    @app.get("/v1/models", tags=["scoring"], dependencies=[Depends(require_token)])
    async def models() -> dict:
        """The loaded model and what a scoring request may ask for."""
        default = variants.default.assessor
        spec = default.spec
        return {
            **default.describe(),
            "tasks": list(spec.tasks),
            "scenes": list(spec.scenes),
            "variants": "built on request" if variants.builds_variants else "fixed",
            "loaded_variants": [{"task": v.key[0], "scene": v.key[1], "forward_passes": v.batcher.forward_passes,
                                 "images_scored": v.batcher.images_scored} for v in variants.loaded],
            "limits": {"max_files": limits.max_files, "max_upload_bytes": limits.max_upload_bytes,
                       "max_pixels": default.max_pixels, "max_batch": max_batch, "max_wait_ms": max_wait_ms},
        }

    @app.post("/v1/score", tags=["scoring"], dependencies=[Depends(require_token)],
              openapi_extra=_SCORE_REQUEST_SCHEMA)
    async def score(request: Request) -> dict:
        """Score uploaded images: one result per file in upload order, an ``error`` (and no score) for each
        file that could not be scored; 422/413 only when no file could be."""
        form = await read_score_form(request, limits)
        variant = await _resolve_variant(variants, form)
        try:
            view = parse_view(form.view, default=variant.assessor.view)
        except ViewError as err:
            raise RequestError(400, f"form field 'view': {err}") from None
        inputs, errors = await _decode_each(variant, form, view, decode_pool)
        good = [i for i, vi in enumerate(inputs) if vi is not None]
        if not good:
            raise _nothing_scored(errors)
        try:
            flat = await variant.batcher.score([inputs[i].pixels[k] for i in good for k in range(len(inputs[i]))])
        except Exception as err:  # noqa: BLE001 — the model failed on a batch: say so, keep serving
            raise RequestError(500, f"scoring failed: {type(err).__name__}: {err}") from None
        info = variant.assessor.describe()
        results, offset = [], 0
        for i, upload in enumerate(form.uploads):
            vi = inputs[i]
            if vi is None:
                results.append({"filename": upload.filename, "score": None, "scene": None, "crop_scores": [],
                                "boxes": [], "error": errors[i]["error"]})
                continue
            own = flat[offset:offset + len(vi)]
            offset += len(vi)
            scenes = [r.scene for r in own if r.scene is not None]
            crop_scores = stored_scores([r.score for r in own])
            results.append({"filename": upload.filename, "score": stored_scores([mean_score(crop_scores)])[0],
                            "scene": max(set(scenes), key=scenes.count) if scenes else None,
                            "crop_scores": crop_scores, "boxes": [list(b) for b in vi.boxes], "error": None})
        return {"results": results, "scored": len(good), "failed": len(form.uploads) - len(good),
                "view": str(view), "model": {name: info[name] for name in RESPONSE_MODEL_FIELDS}}

    _add_page(app)
    if swagger_assets:
        _add_offline_docs(app, swagger_assets)
    return app


def _token_dependency(token: str | None):
    """A dependency that checks ``Authorization: Bearer <token>`` in constant time (no-op without a token)."""
    bearer = HTTPBearer(auto_error=False, description="Needed when the server was started with a token.")
    expected = token.encode("utf-8") if token is not None else None

    async def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if expected is None:
            return
        given = credentials.credentials.encode("utf-8") if credentials is not None else b""
        if not hmac.compare_digest(given, expected):
            message = "missing bearer token" if credentials is None else "wrong bearer token"
            raise RequestError(401, message, headers={"WWW-Authenticate": "Bearer"})

    return require_token


async def _resolve_variant(variants: ModelVariants, form: ScoreForm) -> Variant:
    try:
        return await variants.resolve(form.task, form.scene)
    except VariantUnavailable as err:
        raise RequestError(err.status, str(err)) from None


async def _decode_each(variant: Variant, form: ScoreForm, view, pool: concurrent.futures.Executor
                       ) -> tuple[list, dict[int, dict]]:
    """Each upload -> its view's ViewInput in the decode pool, or None with an error entry ``{"filename",
    "error", "too_large"}`` under its position (an upload over the byte limit is not decoded at all)."""
    loop = asyncio.get_running_loop()
    view_input = variant.assessor.view_input

    def decode(upload):
        return upload if upload.error is not None else view_input(upload.data, view)

    outcomes = await asyncio.gather(*(loop.run_in_executor(pool, decode, upload) for upload in form.uploads),
                                    return_exceptions=True)
    inputs, errors = [], {}
    for position, (upload, outcome) in enumerate(zip(form.uploads, outcomes)):
        if outcome is upload:                       # refused before decoding (over the byte limit)
            errors[position] = {"filename": upload.filename, "error": upload.error, "too_large": True}
        elif isinstance(outcome, ImageDecodeError):
            errors[position] = {"filename": upload.filename, "error": str(outcome),
                                "too_large": outcome.reason in OVERSIZE_REASONS}
        elif isinstance(outcome, BaseException):    # the transform itself failed on this image
            errors[position] = {"filename": upload.filename, "too_large": False,
                                "error": f"preprocess failed ({type(outcome).__name__}: {outcome})"}
        inputs.append(None if position in errors else outcome)
    return inputs, errors


def _nothing_scored(errors: dict[int, dict]) -> RequestError:
    """No upload could be scored: 413 when every one was too large (bytes or pixels), else 422; the
    answer names every file and why."""
    entries = [{"filename": e["filename"], "error": e["error"]} for _, e in sorted(errors.items())]
    first = entries[0]
    more = f" (and {len(entries) - 1} more)" if len(entries) > 1 else ""
    status = 413 if all(e["too_large"] for e in errors.values()) else 422
    return RequestError(status, f"no image could be scored: {first['filename']}: {first['error']}{more}", entries)


def _add_page(app: FastAPI) -> None:
    """``/`` is the scoring page; its script and style are under ``/static``. No CDN anywhere."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")


def _local_swagger_assets() -> Path | None:
    """Folder with swagger-ui-bundle.js and swagger-ui.css from the installed ``fastapi-offline``
    package (we use its files, not its code), or None when it is not installed."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "static"
    needed = ("swagger-ui-bundle.js", "swagger-ui.css")
    return folder if all((folder / name).is_file() for name in needed) else None


def _add_offline_docs(app: FastAPI, assets: Path) -> None:
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
    favicon = "/docs-assets/favicon.png" if (assets / "favicon.png").is_file() else ""

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="perceptiq API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css", swagger_favicon_url=favicon)


def _version() -> str:
    from .. import __version__

    return __version__
