"""Kept for existing imports: precision and device choice now live in ``perceptiq.backbones.precision``."""
from ..backbones.precision import PRECISIONS, autocast_context, cpu_supports_bf16, resolve_device, resolve_precision

__all__ = ["PRECISIONS", "autocast_context", "cpu_supports_bf16", "resolve_device", "resolve_precision"]
