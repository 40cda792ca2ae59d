"""Read a multipart ``POST /v1/score`` body within limits, and turn failures into HTTP answers.

Limits are checked as the body streams in, so an oversized request is refused before it is all read:
the whole body may not exceed ``max_files × max_upload_bytes`` plus 1 MiB for the multipart framing and
form fields; then each file is checked against ``max_upload_bytes`` and the number of files against
``max_files``. Only uploaded bytes are ever read: no field of a request is used as a server path.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

# Room for multipart boundaries, part headers and the small form fields (task, scene, view).
FRAMING_ALLOWANCE_BYTES = 1 << 20
# Form fields other than files are short words; a bigger one is a malformed request.
MAX_FIELD_BYTES = 1024
MAX_FORM_FIELDS = 16


class RequestError(Exception):
    """A request the service refuses; answered as ``{"detail": message, "errors": [...]}``.

    ``errors`` lists ``{"filename", "error"}`` for each upload at fault, so a client can say which file.
    """

    def __init__(self, status: int, message: str, errors: list[dict] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []
        self.headers = headers


@dataclass(frozen=True)
class UploadLimits:
    max_files: int = 32
    max_upload_bytes: int = 20 * 1024 * 1024

    def __post_init__(self):
        if self.max_files < 1 or self.max_upload_bytes < 1:
            raise ValueError(f"limits must be positive: max_files={self.max_files}, "
                             f"max_upload_bytes={self.max_upload_bytes}")

    @property
    def max_body_bytes(self) -> int:
        return self.max_files * self.max_upload_bytes + FRAMING_ALLOWANCE_BYTES


@dataclass(frozen=True)
class Upload:
    """One uploaded file; ``error`` says why it is not scored without being read (over the byte limit)."""

    filename: str
    data: bytes
    error: str | None = None


@dataclass(frozen=True)
class ScoreForm:
    """What a scoring request carries: the files, and optional task/scene/view (None when not given)."""

    uploads: list[Upload]
    task: str | None
    scene: str | None
    view: str | None = None


async def read_score_form(request: Request, limits: UploadLimits) -> ScoreForm:
    """Parse the request's multipart body; raises :class:`RequestError` (400/413/415) when it breaks
    a rule. Files come from the repeatable field ``files``; unnamed files are called ``upload-<i>``."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise RequestError(415, "send the images as multipart/form-data in the field 'files'")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise RequestError(413, f"request body of {int(declared)} bytes is over the limit of "
                                f"{limits.max_body_bytes} bytes ({limits.max_files} files of at most "
                                f"{limits.max_upload_bytes} bytes)")
    parser = MultiPartParser(request.headers, _bounded(request.stream(), limits.max_body_bytes),
                             max_files=limits.max_files, max_fields=MAX_FORM_FIELDS,
                             max_part_size=MAX_FIELD_BYTES)
    try:
        form = await parser.parse()
    except MultiPartException as err:
        message = str(err)
        if message.startswith("Too many files"):
            raise RequestError(413, f"too many files: at most {limits.max_files} per request") from None
        raise RequestError(400, f"malformed multipart body: {message}") from None
    try:
        uploads = await _collect_files(form.getlist("files"), limits)
        unexpected = [key for key, value in form.multi_items()
                      if isinstance(value, UploadFile) and key != "files"]
        if unexpected:
            raise RequestError(400, f"files must be sent in the field 'files', not {sorted(set(unexpected))}")
    finally:
        await form.close()
    if not uploads:
        raise RequestError(400, "no images: send one or more files in the multipart field 'files'")
    return ScoreForm(uploads, _text_field(form, "task"), _text_field(form, "scene"), _text_field(form, "view"))


async def _bounded(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The body chunks, refusing (413) as soon as more than ``limit`` bytes have arrived."""
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise RequestError(413, f"request body is over the limit of {limit} bytes")
        yield chunk


async def _collect_files(values: list, limits: UploadLimits) -> list[Upload]:
    """The uploads in order; one over ``max_upload_bytes`` is kept unread, with its error (answered per file)."""
    uploads = []
    for index, value in enumerate(values):
        if not isinstance(value, UploadFile):
            raise RequestError(400, f"field 'files' #{index + 1} is text, not a file upload")
        name = value.filename or f"upload-{index + 1}"
        if value.size is not None and value.size > limits.max_upload_bytes:
            uploads.append(Upload(name, b"", f"over upload limit ({value.size} bytes > {limits.max_upload_bytes})"))
            continue
        uploads.append(Upload(name, await value.read()))
    return uploads


def _text_field(form, name: str) -> str | None:
    values = form.getlist(name)
    if len(values) > 1:
        raise RequestError(400, f"form field '{name}' given {len(values)} times")
    if not values:
        return None
    value = values[0]
    if not isinstance(value, str):
        raise RequestError(400, f"form field '{name}' must be text, not a file")
    return value.strip() or None
