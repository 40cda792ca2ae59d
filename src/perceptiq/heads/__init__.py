"""Score heads: level expectation (Gamma Eq. 1), antonym probability (CLIP-IQA, GRMP Eq. 2), adapter."""
from .adapter import DEFAULT_ADAPTER_HIDDEN, Adapter
from .antonym import antonym_probability
from .levels import LevelExpectationHead, level_expectation, level_probabilities

__all__ = ["Adapter", "DEFAULT_ADAPTER_HIDDEN", "antonym_probability", "LevelExpectationHead",
           "level_expectation", "level_probabilities"]
