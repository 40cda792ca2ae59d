"""Assessment models: registry (name -> metadata + factory), builders, checkpoints."""
from .checkpoints import atomic_write_bytes, is_checkpoint, load_checkpoint, save_checkpoint
from .loading import AssessmentBundle, build_model
from .registry import ModelSpec, get_model_spec, list_models, register_factory, register_model
from .zero_shot import ScoreOutput, ZeroShotAssessor

# Methods register their factories and specs on import.
from . import gamma  # noqa: E402,F401  (Gamma: MoAE + scene prompts)
from . import grmp  # noqa: E402,F401  (GRMP-IQA: meta-prompts + QGR)
from . import builtin  # noqa: E402,F401  (perceptiq-tiny, shipped in the package)


__all__ = [
    "atomic_write_bytes", "is_checkpoint", "load_checkpoint", "save_checkpoint",
    "AssessmentBundle", "build_model", "ModelSpec", "get_model_spec", "list_models",
    "register_factory", "register_model", "ScoreOutput", "ZeroShotAssessor",
]
