"""Kept for existing imports: decoding and CLIP preprocessing now live in ``perceptiq.imaging``."""
from ..imaging.decode import ALPHA_BACKGROUND, ImageDecodeError, ImageSource, error_reason, load_rgb, to_rgb
from ..imaging.views import CLIP_MEAN, CLIP_STD, clip_preprocess

__all__ = ["ALPHA_BACKGROUND", "CLIP_MEAN", "CLIP_STD", "ImageDecodeError", "ImageSource", "clip_preprocess",
           "error_reason", "load_rgb", "to_rgb"]
