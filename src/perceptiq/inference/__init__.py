"""Inference: decoding, batching, the streaming scorer, result writers, and the public ``Assessor``."""
from ..backbones.precision import cpu_supports_bf16, resolve_device, resolve_precision
from ..imaging import ImageDecodeError, View, clip_preprocess, load_rgb, parse_view
from .assessor import Assessor, load_model
from .results import ScoreResult, ScoreResults
from .scorer import default_output_columns, list_inputs, score_paths
from .writers import RunSummary, open_writer, read_done_paths, read_result_rows

__all__ = [
    "Assessor", "load_model", "ScoreResult", "ScoreResults", "View", "parse_view",
    "ImageDecodeError", "clip_preprocess", "load_rgb", "cpu_supports_bf16",
    "resolve_device", "resolve_precision", "default_output_columns", "list_inputs", "score_paths",
    "RunSummary", "open_writer", "read_done_paths", "read_result_rows",
]
