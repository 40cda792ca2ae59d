"""AGIQA-3K (Li et al., 2023).

Native layout: ``data.csv`` (published in the authors' repository) with columns
``name, prompt, adj1, adj2, style, mos_quality, std_quality, mos_align, std_align``;
the 2,982 generated images come in one archive. Public loaders keep them beside
``data.csv`` or in a folder ``AGIQA-3K/`` or ``image/``; those places are tried in
that order. Two label columns: perceptual quality (default) and text alignment.
"""

from __future__ import annotations

from collections.abc import Mapping

from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import parse_number, read_csv_rows, shown

LABEL_FILE = "data.csv"
CSV_COLUMNS = {"quality": "mos_quality", "align": "mos_align"}
IMAGE_FOLDERS = ("", "AGIQA-3K/", "image/", "images/")


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    csv_column = CSV_COLUMNS[column]
    path = root.require(LABEL_FILE, what="label file")
    where_file = shown(root.root, path)
    return [
        RawRecord(
            image=tuple(folder + row["name"] for folder in IMAGE_FOLDERS),
            label=parse_number(row[csv_column], f"{where_file} row {number}", csv_column),
            origin=f"{where_file} row {number}",
        )
        for number, row in read_csv_rows(path, ("name", csv_column), where_file)
    ]
