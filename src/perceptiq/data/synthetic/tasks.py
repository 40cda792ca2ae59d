"""Distortion meta-knowledge tasks (GRMP-IQA, Sec. 3.3): one task per distortion type.

GRMP-IQA pre-trains its prompts on tasks built from images that share a distortion
type; ``distortion_tasks`` does that grouping for any samples that carry a
``.distortion`` attribute (``perceptiq.data`` samples, or anything shaped like them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar


class HasDistortion(Protocol):
    distortion: str | None


SampleT = TypeVar("SampleT", bound=HasDistortion)


def distortion_tasks(samples: Iterable[SampleT]) -> dict[str, list[SampleT]]:
    """Group ``samples`` by ``.distortion``: {type name: [samples in input order]}.

    Task keys come in order of first appearance. A sample without a distortion type
    (None, empty, or no such attribute) is an error naming its position, because
    silently dropping it would change the task sizes.
    """
    tasks: dict[str, list[SampleT]] = {}
    for index, sample in enumerate(samples):
        name = getattr(sample, "distortion", None)
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"sample {index} ({getattr(sample, 'path', sample)!r}) has no distortion type "
                f"(distortion={name!r}); only samples of synthetically distorted datasets form distortion tasks"
            )
        tasks.setdefault(name, []).append(sample)
    return tasks
