"""Score heads: level expectation (Gamma Eq. 1), antonym probability (CLIP-IQA, GRMP Eq. 2)."""
from .antonym import antonym_probability
from .levels import LevelExpectationHead, level_expectation, level_probabilities

__all__ = ["antonym_probability", "LevelExpectationHead", "level_expectation", "level_probabilities"]
