"""perceptiq: how good an image looks — CLIP-based quality and aesthetics assessment."""
__version__ = "0.1.0"


def load_model(*args, **kwargs):
    """Build a registered assessment model or load a trained checkpoint; see ``perceptiq.inference.assessor.load_model``."""
    from .inference.assessor import load_model as _load_model

    return _load_model(*args, **kwargs)


__all__ = ["load_model", "__version__"]
