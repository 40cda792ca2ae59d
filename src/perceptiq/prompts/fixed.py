"""Fixed (hand-written) prompt sets, read from ``prompt_sets.yaml``.

Every function returns plain strings; turning them into text features is the model's job (once per
model, never per image).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml

TASKS = ("quality", "aesthetics")


@lru_cache(maxsize=1)
def prompt_data() -> dict:
    text = resources.files("perceptiq.prompts").joinpath("prompt_sets.yaml").read_text()
    return yaml.safe_load(text)


def scene_names() -> list[str]:
    return list(prompt_data()["scenes"])


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}': choose one of {', '.join(TASKS)}")
    return task


def check_scene(scene: str) -> str:
    names = scene_names()
    if scene not in names:
        raise ValueError(f"unknown scene '{scene}': choose one of {', '.join(names)} (or 'auto')")
    return scene


def level_prompts(style: str, *, scene: str | None = None) -> list[str]:
    """Five level prompts, worst to best, e.g. ``level_prompts("scene-quality", scene="face")``.

    style: a key of ``level_templates`` (naive, quality, aesthetics, general, scene-quality, ...).
    """
    data = prompt_data()
    templates = data["level_templates"]
    if style not in templates:
        raise ValueError(f"unknown level prompt style '{style}': choose one of {', '.join(templates)}")
    template = templates[style]
    word = ""
    if "{scene}" in template:
        if scene is None:
            raise ValueError(f"prompt style '{style}' needs a scene ({', '.join(scene_names())})")
        word = data["scenes"][check_scene(scene)]["word"]
    return [template.format(level=level, scene=word) for level in data["levels"]]


def scene_level_prompts(task: str, scene: str | None) -> list[str]:
    """The zero-shot model's level prompts for a task and (optional) scene.

    With a scene: Gamma's Scene-based Differential Prompts (Table 11); aesthetics is always scene
    "natural" there, and so here. Without: the quality / aesthetics prompts of Table 15.
    """
    check_task(task)
    if scene is None:
        return level_prompts(task)
    if task == "aesthetics":
        return level_prompts("scene-aesthetics", scene="natural")
    return level_prompts("scene-quality", scene=scene)


def antonym_pairs(attribute: str) -> list[tuple[str, str]]:
    pairs = prompt_data()["antonyms"]
    if attribute not in pairs:
        raise ValueError(f"no antonym pairs for '{attribute}': choose one of {', '.join(pairs)}")
    return [tuple(p) for p in pairs[attribute]]


def scene_classifier_prompts() -> dict[str, str]:
    return {name: entry["classifier"] for name, entry in prompt_data()["scenes"].items()}


def semantic_prompts() -> list[str]:
    data = prompt_data()
    return [data["semantic_template"].format(cls=c) for c in data["semantic_classes"]]


def quality_class_words() -> list[str]:
    return list(prompt_data()["quality_classes"])
