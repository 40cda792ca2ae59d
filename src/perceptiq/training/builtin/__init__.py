"""Building the built-in model: pristine-photo crop banks, the DCT patch start of the first model, the builder."""
from .build import build_builtin_model, prepare_data

__all__ = ["build_builtin_model", "prepare_data"]
