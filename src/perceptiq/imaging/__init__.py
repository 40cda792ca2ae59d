"""Imaging: how a file becomes model input, shared by scoring (``inference``) and training.

``decode`` opens any image file into 8-bit RGB (EXIF orientation, every Pillow mode, JPEG draft, pixel
limit, HEIC/AVIF); ``views`` turns the picture into model input (``resize``, ``crops:N``, ``full``).
This package sits below ``inference`` and ``training`` and imports no model code.
"""
from .decode import ImageDecodeError, error_reason, load_rgb, to_rgb
from .views import (CLIP_MEAN, CLIP_STD, DEFAULT_FULL_MAX_PIXELS, VIEW_GRAMMAR, View, ViewError, ViewInput,
                    ViewTransform, clip_preprocess, crop_positions, parse_view)

__all__ = [
    "ImageDecodeError", "error_reason", "load_rgb", "to_rgb", "CLIP_MEAN", "CLIP_STD",
    "DEFAULT_FULL_MAX_PIXELS", "VIEW_GRAMMAR", "View", "ViewError", "ViewInput", "ViewTransform",
    "clip_preprocess", "crop_positions", "parse_view",
]
