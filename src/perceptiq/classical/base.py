"""What every classical measure offers: one image -> one float, many images -> scores with per-item errors."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .catalog import MeasureSpec, get_measure_spec
from .images import ImageInputError, ImageSource, describe_source


@dataclass(frozen=True)
class MeasureScores:
    """Scores of many images: ``scores`` (N,) float64 with nan where ``errors[i]`` says why."""

    measure: str
    scores: np.ndarray
    errors: list[str | None]
    sources: list[str]

    @property
    def n_failed(self) -> int:
        return sum(error is not None for error in self.errors)

    def failures(self) -> list[tuple[str, str]]:
        """``(source, error)`` of every image that got no score."""
        return [(source, error) for source, error in zip(self.sources, self.errors) if error is not None]


class ClassicalMeasure(ABC):
    """A training-free no-reference measure. Subclasses set ``name`` (a key of catalog.yaml)."""

    name: str

    @property
    def spec(self) -> MeasureSpec:
        """The measure's metadata: direction, score range, citation (classical/catalog.yaml)."""
        return get_measure_spec(self.name)

    @property
    def higher_is_better(self) -> bool:
        return self.spec.higher_is_better

    @abstractmethod
    def score(self, image: ImageSource) -> float:
        """The score of one image (path, PIL image or (H, W, 3) uint8 array); raises ``ValueError`` naming
        the image when it cannot be scored."""

    def score_many(
        self, images: Iterable[ImageSource], *, progress: Callable[[int], None] | None = None
    ) -> MeasureScores:
        """Score every image; an image that cannot be read or scored gets nan and an error, the rest go on.

        ``progress(done)`` is called after each image.
        """
        scores, errors, sources = [], [], []
        for done, image in enumerate(images, start=1):
            sources.append(describe_source(image))
            try:
                value = float(self.score(image))
                if not math.isfinite(value):
                    raise ValueError(f"{describe_source(image)}: the score is not finite ({value})")
                scores.append(value)
                errors.append(None)
            except (ImageInputError, ValueError, MemoryError) as error:
                scores.append(math.nan)
                errors.append(str(error))
            if progress is not None:
                progress(done)
        return MeasureScores(self.name, np.asarray(scores, dtype=np.float64), errors, sources)
