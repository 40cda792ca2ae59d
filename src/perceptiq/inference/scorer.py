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
    view=None,
    batch_size: int = 32,
    num_workers: int | None = None,
    writer: ResultWriter | None = None,
    skip: set[str] | None = None,
    summary: RunSummary | None = None,
    progress: bool = True,
    extra_columns: tuple[str, ...] = (),
) -> Iterator[dict]:
    """Score files and folders; yields one row ``{path, score, error[, scene], crop_scores, boxes}`` per
    input, in order.

    ``view``: how each file becomes model input (``perceptiq.imaging`` view; default the assessor's); the
    score is the mean over the view's inputs, ``crop_scores``/``boxes`` hold each input's score and
    region (fractions of the image). ``writer`` receives each batch's rows restricted to its columns
    (then ``flush()``), ``skip`` holds paths already done (resume), ``summary`` is updated in place. Bad
    files become rows with ``error`` set; the run goes on.
    ``num_workers=None`` places decoding by ``loader.auto_decode_plan`` (CPU model: threads in this
    process between model calls; GPU model: worker processes).
    """
    files = list_inputs(paths)
    if skip:
        before = len(files)
        files = [f for f in files if f not in skip]
        if summary is not None:
            summary.n_skipped += before - len(files)
    if not files:
        return
    transform = assessor.view_transform(view)
    loader = make_scoring_loader(
        files, preprocess=transform, batch_size=batch_size, num_workers=num_workers,
        pin_memory=assessor.device.type == "cuda", target_short_side=transform.decode_short_side,
        max_pixels=assessor.max_pixels, device=assessor.device,
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), unit="img", desc="scoring", dynamic_ncols=True)
    try:
        for batch in loader:
            outcomes = {}
            if batch.good_positions:
                scored = assessor.predict_inputs(batch.inputs, max_batch=batch_size, stacked=batch.pixels)
                outcomes = {pos: (outcome, vi) for pos, outcome, vi in
                            zip(batch.good_positions, scored, batch.inputs)}
            rows = []
            for pos, path in enumerate(batch.paths):
                outcome, vi = outcomes.get(pos, (None, None))
                row = {"path": path, "score": None if outcome is None else outcome.score,
                       "error": batch.errors.get(pos)}
                if "scene" in extra_columns:
                    row["scene"] = None if outcome is None else outcome.scene
                row["crop_scores"] = [] if outcome is None else outcome.crop_scores
                row["boxes"] = [] if vi is None else list(vi.boxes)
                rows.append(row)
            if writer is not None:
                columns = getattr(writer, "columns", None)
                writer.write_rows(rows if columns is None else
                                  [{c: row[c] for c in columns if c in row} for row in rows])
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

