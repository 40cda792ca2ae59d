"""The streaming scorer: paths -> decode in workers -> batches -> model -> rows written as they come.

Nothing per image is kept beyond the batch in flight: rows go to the writer (flushed each batch) and
only counts stay in memory, so memory is flat however long the run.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from .files import iter_image_files
from .loader import make_scoring_loader
from .writers import ResultWriter, RunSummary


def list_inputs(paths: Iterable[str | os.PathLike], *, recursive: bool = True) -> list[str]:
    """Files given explicitly plus image files under the given folders, in a deterministic order."""
    return [os.fspath(p) for p in iter_image_files(paths, recursive=recursive)]


def score_paths(
    assessor,
    paths: Iterable[str | os.PathLike],
    *,
    batch_size: int = 32,
    num_workers: int | None = None,
    writer: ResultWriter | None = None,
    skip: set[str] | None = None,
    summary: RunSummary | None = None,
    progress: bool = True,
    extra_columns: tuple[str, ...] = (),
) -> Iterator[dict]:
    """Score files and folders; yields one row ``{path, score, error[, scene]}`` per input, in order.

    ``writer`` receives each batch's rows (then ``flush()``), ``skip`` holds paths already done (resume),
    ``summary`` is updated in place. Bad files become rows with ``error`` set; the run goes on.
    """
    files = list_inputs(paths)
    if skip:
        before = len(files)
        files = [f for f in files if f not in skip]
        if summary is not None:
            summary.n_skipped += before - len(files)
    if not files:
        return
    loader = make_scoring_loader(
        files, preprocess=assessor.transform, batch_size=batch_size, num_workers=num_workers,
        pin_memory=assessor.device.type == "cuda", target_short_side=assessor.image_size,
        max_pixels=assessor.max_pixels,
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), unit="img", desc="scoring", dynamic_ncols=True)
    try:
        for batch in loader:
            scenes_at: dict[int, str] = {}
            good_scores: list[float] = []
            if batch.good_positions:
                out = assessor.predict(batch.pixels)
                good_scores = out.scores.tolist()
                if out.scenes is not None:
                    scenes_at = dict(zip(batch.good_positions, out.scenes))
            rows = []
            for pos, (_, path, score, error) in enumerate(batch.results(good_scores)):
                row = {"path": path, "score": score, "error": error}
                if "scene" in extra_columns:
                    row["scene"] = scenes_at.get(pos)
                rows.append(row)
            if writer is not None:
                writer.write_rows(rows)
                writer.flush()
            if summary is not None:
                summary.record_rows(rows)
            if bar is not None:
                bar.update(len(rows))
            yield from rows
    finally:
        if bar is not None:
            bar.close()


def default_output_columns(assessor) -> tuple[str, ...]:
    """``path, score, error`` plus ``scene`` when the model picks prompts by scene."""
    columns = ("path", "score", "error")
    return columns + ("scene",) if assessor.scene is not None else columns

