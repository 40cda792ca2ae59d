"""LIVE-FB / FLIVE, the PaQ-2-PiQ database (Ying et al., 2020).

Native layout (FLIVE_Database release): ``labels_image.csv`` with columns ``name``
(path of the picture relative to ``database/``, e.g. ``EE371R/cj50.jpg``) and
``mos`` on [0, 100]; pictures under ``database/``. Patch-level labels
(``labels_patch.csv``) are not read: the papers score whole pictures (39,810).
Some unpackings put the pictures directly beside the CSV; both places are tried.
"""

from __future__ import annotations

from collections.abc import Mapping

from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import parse_number, read_csv_rows, shown

LABEL_FILE = "labels_image.csv"


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    path = root.require(LABEL_FILE, what="label file")
    where_file = shown(root.root, path)
    return [
        RawRecord(
            image=(f"database/{row['name']}", row["name"]),
            label=parse_number(row["mos"], f"{where_file} row {number}", "mos"),
            origin=f"{where_file} row {number}",
        )
        for number, row in read_csv_rows(path, ("name", "mos"), where_file)
    ]
