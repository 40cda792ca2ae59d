"""Compression (KADID-10k group "compression"): JPEG2000 and JPEG via Pillow's codecs.

The image is encoded in memory and decoded again, so the artefacts are exactly those
of the real codec. JPEG2000 needs Pillow built with OpenJPEG (``PIL.features.check("jpg_2000")``);
``catalogue.py`` marks the type as unavailable where it is not.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..colour import from_uint8, to_uint8


def codec_round_trip(img: np.ndarray, format_name: str, **save_options) -> np.ndarray:
    """Encode (H, W, 3) float image to ``format_name`` in memory and decode it back."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(img), mode="RGB").save(buffer, format=format_name, **save_options)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return from_uint8(np.asarray(decoded.convert("RGB")))


def jpeg2000(img: np.ndarray, target_psnr_db: float, rng: np.random.Generator) -> np.ndarray:
    """JPEG2000 (irreversible 9/7 wavelet, raw codestream) truncated at ``target_psnr_db``.

    A PSNR target rather than a compression ratio: OpenJPEG's codestream cannot shrink
    below a couple of hundred bytes, so on small images the high ratios all collapse
    onto that floor (identical levels), whereas a PSNR target behaves the same at
    every size.
    """
    # OpenJPEG refuses more decomposition levels than the smaller side allows.
    resolutions = int(np.clip(np.floor(np.log2(min(img.shape[:2]))), 1, 6))
    return codec_round_trip(
        img,
        "JPEG2000",
        quality_mode="dB",
        quality_layers=[float(target_psnr_db)],
        irreversible=True,
        num_resolutions=resolutions,
        no_jp2=True,
    )


def jpeg(img: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    """Baseline JPEG at Pillow/libjpeg ``quality`` (1..95) with 4:2:0 chroma subsampling."""
    return codec_round_trip(img, "JPEG", quality=int(quality), subsampling="4:2:0")
