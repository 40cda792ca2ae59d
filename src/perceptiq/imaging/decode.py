"""Decode any image file into an 8-bit RGB picture.

``load_rgb`` is the only place where perceptiq opens image files, for scoring and for training alike
(``perceptiq.imaging.views`` then turns the picture into model input). Every way decoding can
fail ends as an :class:`ImageDecodeError` whose ``reason`` is a short, stable phrase ("file not found",
"corrupt or truncated", ...), so a run over a million files can report one row per bad file and a
count per reason instead of crashing. The policy (modes, alpha, 16-bit, JPEG draft, pixel limit) is
written down in docs/inference.md.
"""
from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

# Colour that transparent pixels are composited onto (see docs/inference.md, "Alpha").
ALPHA_BACKGROUND = (255, 255, 255)

_EXIF_ORIENTATION_TAG = 0x0112  # TIFF/EXIF tag number of "Orientation"

ImageSource = str | os.PathLike | bytes | Image.Image

# Pillow's own decompression-bomb guard reads the module global ``Image.MAX_IMAGE_PIXELS``. We enforce
# our own per-call ``max_pixels`` instead, so the global is lifted only while ``Image.open`` parses the
# header; the lock keeps concurrent threads from restoring each other's temporary value.
_PILLOW_LIMIT_LOCK = threading.Lock()


class ImageDecodeError(Exception):
    """An image that could not be turned into RGB pixels.

    ``reason`` is a short stable category (used to count failures); ``detail`` is optional context.
    ``str(error)`` is ``"reason"`` or ``"reason (detail)"``, e.g. ``"over pixel limit (48000000 px >
    1000000)"`` — the text that goes into the ``error`` column of a result row.
    """

    def __init__(self, reason: str, detail: str | None = None):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason} ({detail})" if detail else reason)


def error_reason(message: str) -> str:
    """The category of an error message written as ``"reason (detail)"``: the part before `` (``."""
    return message.split(" (", 1)[0]


def load_rgb(
    source: ImageSource,
    *,
    target_short_side: int | None = 224,
    max_pixels: int = 200_000_000,
) -> Image.Image:
    """Open, fully decode and convert one image to 8-bit RGB.

    ``source`` is a path, the encoded file's bytes, or an already opened PIL image. The pixel count
    from the header is checked against ``max_pixels`` before any pixel data is decoded. For JPEGs,
    ``target_short_side`` lets libjpeg decode at 1/2, 1/4 or 1/8 scale while keeping the short side at
    least ``target_short_side`` (``None`` decodes at full size); other formats decode at full size.
    EXIF orientation is applied. Raises :class:`ImageDecodeError` for every failure.
    """
    if isinstance(source, Image.Image):
        image = source
        _check_pixel_count(image.size, max_pixels)
        return _decode_opened(image, target_short_side)
    fp = _open_source(source)
    try:
        image = _open_header(fp)
        _check_pixel_count(image.size, max_pixels)
        return _decode_opened(image, target_short_side)
    finally:
        fp.close()


def _open_source(source: str | os.PathLike | bytes) -> io.IOBase:
    """A binary file object for a path or for bytes; missing, empty and unreadable files fail here."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageDecodeError("empty file")
        return io.BytesIO(source)
    path = Path(source)
    try:
        fp = open(path, "rb")  # noqa: SIM115 — closed by load_rgb
    except FileNotFoundError:
        raise ImageDecodeError("file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError("is a directory") from None
    except PermissionError:
        raise ImageDecodeError("permission denied") from None
    except OSError as err:
        raise ImageDecodeError("unreadable file", err.strerror or type(err).__name__) from None
    if os.fstat(fp.fileno()).st_size == 0:
        fp.close()
        raise ImageDecodeError("empty file")
    return fp


def _open_header(fp: io.IOBase, *, plugin_tried: bool = False) -> Image.Image:
    """``Image.open`` (reads the header only) with Pillow's global pixel guard lifted; see the lock."""
    with _PILLOW_LIMIT_LOCK:
        saved_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(fp)
        except UnidentifiedImageError:
            kind = heif_kind(fp)
            if kind is None:
                raise ImageDecodeError("not an image") from None
        except Exception as err:  # a recognised format whose header is broken
            raise ImageDecodeError("corrupt or truncated", _describe(err)) from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved_limit
    # An HEIF-family container (HEIC, AVIF) that this Pillow cannot open: open it through the optional
    # plugin where it is installed, else say exactly what to install (never skip the file silently).
    if kind == "heic" and _register_heif_plugin():
        if plugin_tried:
            raise ImageDecodeError("corrupt or truncated", "an HEIF container pillow-heif cannot read")
        fp.seek(0)
        return _open_header(fp, plugin_tried=True)
    raise ImageDecodeError("unsupported format", HEIF_INSTALL_HINTS[kind])


# Major/compatible brands of the ISO-BMFF 'ftyp' box (ISO/IEC 23008-12 for HEIF, AV1-AVIF spec).
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1",
                          b"msf1"})
HEIF_INSTALL_HINTS = {
    "heic": "HEIC/HEIF needs the heic extra: pip install 'perceptiq[heic]' (pillow-heif)",
    "avif": "AVIF needs Pillow built with libavif: pip install -U 'Pillow>=11.3'",
}
_HEIF_PLUGIN: list[bool] = []  # [registered?] once tried


def heif_kind(fp: io.IOBase) -> str | None:
    """"avif" or "heic" when the file is an HEIF-family container (by its 'ftyp' box), else None.
    The file position is restored."""
    position = fp.tell()
    try:
        fp.seek(0)
        head = fp.read(64)
    finally:
        fp.seek(position)
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    box_size = min(int.from_bytes(head[0:4], "big"), len(head))
    major = head[8:12]
    compatible = {head[i:i + 4] for i in range(16, box_size - 3, 4)}
    if major in _AVIF_BRANDS:
        return "avif"
    if major in _HEIC_BRANDS:
        return "heic"
    if compatible & _AVIF_BRANDS:
        return "avif"
    if compatible & _HEIC_BRANDS:
        return "heic"
    return None


def _register_heif_plugin() -> bool:
    """Register pillow-heif's opener with Pillow (once); False when the package is not installed."""
    if not _HEIF_PLUGIN:
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            _HEIF_PLUGIN.append(False)
        else:
            register_heif_opener()
            _HEIF_PLUGIN.append(True)
    return _HEIF_PLUGIN[0]


def _check_pixel_count(size: tuple[int, int], max_pixels: int) -> None:
    pixels = size[0] * size[1]
    if pixels > max_pixels:
        raise ImageDecodeError("over pixel limit", f"{pixels} px > {max_pixels}")


def _decode_opened(image: Image.Image, target_short_side: int | None) -> Image.Image:
    """Draft (JPEG), decode, orient and convert an opened image; all failures become ImageDecodeError."""
    try:
        if target_short_side and image.format in ("JPEG", "MPO"):
            # draft() picks the largest 1/s scale (s in 8, 4, 2, 1) with both sides >= the request,
            # so the short side stays >= target_short_side.
            image.draft("RGB", (target_short_side, target_short_side))
        image.load()  # force the full decode here so truncated data fails inside this try
        image = _apply_exif_orientation(image)
        return to_rgb(image)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as err:  # a frame/tile bigger than Pillow's own guard
        raise ImageDecodeError("over pixel limit", _describe(err)) from None
    except MemoryError:
        raise ImageDecodeError("out of memory while decoding") from None
    except Exception as err:  # OSError, SyntaxError, ValueError, struct.error, ... from plugins
        raise ImageDecodeError("corrupt or truncated", _describe(err)) from None


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Rotate/flip by the EXIF Orientation tag. Unreadable EXIF keeps the stored orientation (logged):
    the pixels themselves are fine, and metadata damage should not cost an image its score."""
    try:
        if image.getexif().get(_EXIF_ORIENTATION_TAG, 1) == 1:
            return image  # upright already; exif_transpose would return a needless copy
        oriented = ImageOps.exif_transpose(image)
    except Exception as err:
        log.warning("ignoring unreadable EXIF orientation (%s)", _describe(err))
        return image
    return oriented if oriented is not None else image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded image of any Pillow mode to 8-bit RGB (policy in docs/inference.md).

    * ``1``, ``L``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGB``: Pillow's conversion.
    * Alpha (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``, ``P`` with a transparency entry, ``RGB`` with a
      transparent colour): composited onto white (``ALPHA_BACKGROUND``).
    * ``I;16*``: 16-bit, scaled by 255/65535. ``I``: 32-bit integers, read as 16-bit when every value is
      in [0, 65535], else stretched min..max. ``F``: read as [0, 1] when every value is, else stretched.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_high_depth_to_uint8(image), mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return _composite_on_background(image.convert("RGBA"))
    try:
        return image.convert("RGB")
    except ValueError:
        raise ImageDecodeError("unsupported image mode", mode) from None


def _composite_on_background(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_depth_to_uint8(image: Image.Image) -> np.ndarray:
    """[H, W] uint8 from a single-channel 16-bit, 32-bit integer or float image (see ``to_rgb``)."""
    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        full_scale = 65535.0
        low = 0.0
    elif image.mode == "I" and values.size and values.min() >= 0 and values.max() <= 65535:
        full_scale = 65535.0
        low = 0.0
    elif image.mode == "F" and values.size and values.min() >= 0.0 and values.max() <= 1.0:
        full_scale = 1.0
        low = 0.0
    else:  # unknown range: stretch what is there (a constant image maps to 0)
        values = np.nan_to_num(values.astype(np.float64))
        low = float(values.min()) if values.size else 0.0
        full_scale = max(float(values.max()) - low, 1e-12) if values.size else 1.0
    scaled = (values.astype(np.float64) - low) * (255.0 / full_scale)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
