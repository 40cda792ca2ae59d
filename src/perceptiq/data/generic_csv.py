"""The generic CSV: any labelled image set in one file.

Format: a header row, then one image per row. Columns ``path`` and ``score`` are
required; ``ref``, ``distortion``, ``level`` and ``scene`` are optional. ``path`` is
relative to the CSV's folder (or absolute) and is matched case-insensitively.
``score`` is the label on its own scale; ``score_range=(low, high)`` maps it to
[0, 1] (values outside are an error), and without a range the file's min and max
are used. ``higher_is_better=False`` flips it (a DMOS). Any other column is an error,
so a misspelt optional column is not silently ignored.
"""

from __future__ import annotations

import csv
from pathlib import Path

from perceptiq.data.parsers._assemble import MissingPolicy, assemble
from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import parse_integer, parse_number, read_csv_rows
from perceptiq.data.records import (
    DatasetFormatError,
    DatasetSpec,
    LabelColumn,
    LabeledDataset,
    LabelScale,
    Scene,
    Task,
)

REQUIRED_COLUMNS = ("path", "score")
OPTIONAL_COLUMNS = ("ref", "distortion", "level", "scene")
SCENES = ("natural", "ai-generated", "face", "underwater")
GENERIC_LAYOUT = (
    "<any folder>/labels.csv  header 'path,score[,ref,distortion,level,scene]'\n"
    "<paths in the CSV, relative to its folder>"
)


def read_generic_rows(csv_path: Path) -> list[RawRecord]:
    """Raw records of a generic CSV (labels as written, not normalised)."""
    shown_as = csv_path.name
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        header = [h.strip() for h in next(csv.reader(handle), [])]
    unknown = [h for h in header if h and h not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise DatasetFormatError(
            f"{shown_as} row 1: unknown columns {unknown}; allowed: {list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}"
        )
    records = []
    for number, row in read_csv_rows(csv_path, REQUIRED_COLUMNS, shown_as):
        where = f"{shown_as} row {number}"
        if not row["path"]:
            raise DatasetFormatError(f"{where}: empty 'path'")
        scene = row.get("scene") or None
        if scene is not None and scene not in SCENES:
            raise DatasetFormatError(f"{where}: scene '{scene}' is not one of {list(SCENES)}")
        level = row.get("level") or None
        records.append(
            RawRecord(
                image=(row["path"],),
                label=parse_number(row["score"], where, "score"),
                origin=where,
                ref=row.get("ref") or None,
                distortion=row.get("distortion") or None,
                level=None if level is None else parse_integer(level, where, "level"),
                scene=scene,
            )
        )
    return records


def generic_spec(
    name: str,
    score_range: tuple[float, float] | None,
    higher_is_better: bool,
    task: Task,
    scene: Scene,
) -> DatasetSpec:
    """The spec a bare generic CSV gets (no published metadata)."""
    if score_range is not None:
        low, high = (float(v) for v in score_range)
        if not high > low:
            raise ValueError(f"score_range={score_range!r}: high must exceed low")
        source = "given by the caller"
    else:
        low = high = None
        source = "min..max of the file"
    scale = LabelScale("MOS" if higher_is_better else "DMOS", low, high, source)
    return DatasetSpec(
        name=name,
        title=f"generic CSV '{name}'",
        aliases=(),
        task=task,
        scene=scene,
        columns=(LabelColumn("score", "column 'score'", scale),),
        default_column="score",
        expected_count=None,
        count_source="",
        synthetic=False,
        layout=GENERIC_LAYOUT,
        native_format="generic CSV",
        format_note="",
        format_source="perceptiq",
    )


def load_csv_with_spec(
    csv_path: str | Path,
    spec: DatasetSpec,
    *,
    column: str | None = None,
    check_files: bool = True,
    missing: MissingPolicy = "error",
) -> LabeledDataset:
    """Read a generic CSV as dataset ``spec`` (its scale, scene and task apply)."""
    path = Path(csv_path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{spec.name}: missing CSV file '{path}'")
    records = read_generic_rows(path)
    root = CaseInsensitiveRoot(path.parent, spec.name)
    return assemble(spec, spec.column(column), records, root, check_files=check_files, missing=missing)


def load_generic_csv(
    csv_path: str | Path,
    *,
    score_range: tuple[float, float] | None = None,
    higher_is_better: bool = True,
    name: str = "csv",
    task: Task = "quality",
    scene: Scene = "natural",
    check_files: bool = True,
    missing: MissingPolicy = "error",
) -> LabeledDataset:
    """Load a generic CSV (see the module docstring for the format)."""
    spec = generic_spec(name, score_range, higher_is_better, task, scene)
    return load_csv_with_spec(csv_path, spec, check_files=check_files, missing=missing)
