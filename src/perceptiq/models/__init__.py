"""Assessment models: registry (name -> metadata + factory), builders, checkpoints."""
from .checkpoints import atomic_write_bytes, is_checkpoint, load_checkpoint, save_checkpoint
from .loading import AssessmentBundle, build_model
from .registry import ModelSpec, get_model_spec, list_models, register_factory, register_model
from .zero_shot import ScoreOutput, ZeroShotAssessor


__all__ = [
    "atomic_write_bytes", "is_checkpoint", "load_checkpoint", "save_checkpoint",
    "AssessmentBundle", "build_model", "ModelSpec", "get_model_spec", "list_models",
    "register_factory", "register_model", "ScoreOutput", "ZeroShotAssessor",
]
