"""Prompts: fixed prompt sets as data; learnable text contexts and visual prompts are composed onto a backbone."""
from .fixed import (
    TASKS,
    antonym_pairs,
    check_scene,
    check_task,
    level_prompts,
    prompt_data,
    quality_class_words,
    scene_classifier_prompts,
    scene_level_prompts,
    scene_names,
    semantic_prompts,
)

__all__ = [
    "TASKS", "antonym_pairs", "check_scene", "check_task", "level_prompts", "prompt_data",
    "quality_class_words", "scene_classifier_prompts", "scene_level_prompts", "scene_names",
    "semantic_prompts",
]

# Learnable prompts composed onto a backbone (GRMP-IQA section 3.2).
from .learnable import LearnableTextContext  # noqa: E402
from .visual import DeepVisualPrompts  # noqa: E402

__all__ += ["LearnableTextContext", "DeepVisualPrompts"]
