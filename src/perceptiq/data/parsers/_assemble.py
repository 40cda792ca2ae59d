"""Turn a parser's raw records into samples: range check, normalisation, and image
resolution (case-insensitive; missing images are an error or, on request, skipped).
Shared by every registered dataset and by the generic CSV reader.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from perceptiq.data.parsers._base import ANYWHERE, RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.records import DatasetFormatError, DatasetSpec, LabelColumn, LabeledDataset, Sample

MissingPolicy = Literal["error", "skip"]
log = logging.getLogger(__name__)


def resolve_image(root: CaseInsensitiveRoot, candidates: tuple[str, ...]) -> Path | None:
    """The first existing candidate (``**/name`` = unique file of that name anywhere)."""
    for candidate in candidates:
        if candidate.startswith(ANYWHERE):
            found = root.find_by_name(candidate[len(ANYWHERE):])
        else:
            found = root.resolve(candidate)
        if found is not None and found.is_file():
            return found
    return None


def assemble(
    spec: DatasetSpec,
    column: LabelColumn,
    records: list[RawRecord],
    root: CaseInsensitiveRoot,
    *,
    check_files: bool = True,
    missing: MissingPolicy = "error",
) -> LabeledDataset:
    """Samples for ``records``: labels checked against the column's fixed range, scores
    normalised (DMOS flipped), image paths resolved.

    With ``check_files=False`` an image that cannot be found keeps the literal path of
    its first candidate (useful to inspect labels without the images).
    """
    if missing not in ("error", "skip"):
        raise ValueError(f"missing={missing!r}; choose 'error' or 'skip'")
    if not records:
        raise DatasetFormatError(f"{spec.name}: the label files under '{root.root}' list no images")
    scale = column.scale
    for record in records:
        if not scale.accepts(record.label):
            raise DatasetFormatError(
                f"{record.origin}: label {record.label:g} outside the {spec.name} range "
                f"[{scale.low:g}, {scale.high:g}] of column '{column.key}'"
            )
    beyond = [r.label for r in records if not scale.contains(r.label)]
    if beyond:  # a nominal range (strict=False): kept, mapped on the same line, said once
        log.warning("%s: %d label(s) of column '%s' lie outside its nominal range [%g, %g] (from %g to %g); "
                    "they are kept and their scores lie a little outside [0, 1]", spec.name, len(beyond),
                    column.key, scale.low, scale.high, min(beyond), max(beyond))
    to_score = scale.normaliser([r.label for r in records])
    samples: list[Sample] = []
    skipped: list[str] = []
    for record in records:
        path = resolve_image(root, record.image)
        if path is None:
            literal = record.image[0].removeprefix(ANYWHERE)
            if not check_files:
                path = root.root / literal
            elif missing == "skip":
                skipped.append(literal)
                continue
            else:
                raise FileNotFoundError(
                    f"{root.missing_message(record.image, 'image')}; named by {record.origin}"
                )
        samples.append(
            Sample(
                path=path,
                label=record.label,
                score=to_score(record.label),
                ref=record.ref,
                distortion=record.distortion,
                level=record.level,
                dataset=spec.name,
                scene=record.scene or spec.scene,
            )
        )
    return LabeledDataset(spec=spec, samples=samples, root=root.root, column=column.key, skipped=tuple(skipped))
