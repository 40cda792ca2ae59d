"""What ``Assessor.score`` returns: one :class:`ScoreResult` per input (path, score, per-crop scores,
error), collected in :class:`ScoreResults`, which numpy reads as the array of scores."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..imaging.views import pool_scores as mean_score  # noqa: F401 — the view's pooling rule, re-exported

Box = tuple[float, float, float, float]


@dataclass
class ScoreResult:
    """One input's outcome.

    path: the file (None for an in-memory image or tensor). score: the image's score, the mean of
    ``crop_scores`` (None when it failed). crop_scores / boxes: one score per model input of the view and
    the region it showed, as fractions (left, top, right, bottom) of the image's width and height
    (``resize`` and ``full``: one each). scene: the scene whose prompts were used (scene-aware models).
    error: why the input could not be scored (None when it was). ``float(result)`` is the score, NaN
    on failure.
    """

    path: str | None
    score: float | None
    error: str | None = None
    crop_scores: list[float] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    scene: str | None = None
    view: str = "resize"

    @property
    def ok(self) -> bool:
        return self.error is None and self.score is not None

    def __float__(self) -> float:
        return float("nan") if self.score is None else float(self.score)

    def to_dict(self) -> dict:
        return {"path": self.path, "score": self.score, "error": self.error, "scene": self.scene,
                "view": self.view, "crop_scores": list(self.crop_scores), "boxes": [list(b) for b in self.boxes]}


class ScoreResults(Sequence[ScoreResult]):
    """The results of one ``score`` call, in input order (folders expanded in listing order).

    ``results[i]`` is a :class:`ScoreResult`; ``results.scores`` (and ``np.asarray(results)``) the scores
    as float64 with NaN for failures; ``results.paths`` / ``results.errors`` the other columns.
    """

    def __init__(self, results: Sequence[ScoreResult]):
        self._results = list(results)

    def __len__(self) -> int:
        return len(self._results)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ScoreResults(self._results[index])
        return self._results[index]

    def __iter__(self) -> Iterator[ScoreResult]:
        return iter(self._results)

    @property
    def scores(self) -> np.ndarray:
        return np.array([float(r) for r in self._results], dtype=np.float64)

    @property
    def paths(self) -> list[str | None]:
        return [r.path for r in self._results]

    @property
    def errors(self) -> list[str | None]:
        return [r.error for r in self._results]

    @property
    def failed(self) -> list[ScoreResult]:
        return [r for r in self._results if not r.ok]

    def __array__(self, dtype=None, copy=None):
        scores = self.scores
        return scores if dtype is None else scores.astype(dtype)

    def __repr__(self) -> str:
        shown = ", ".join(f"{r.path or '<image>'}: " + ("nan" if r.score is None else f"{r.score:.4f}")
                          for r in self._results[:5])
        more = f", ... ({len(self)} in all)" if len(self) > 5 else ""
        return f"ScoreResults([{shown}{more}])"
