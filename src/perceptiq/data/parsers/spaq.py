"""SPAQ, Smartphone Photography Attribute and Quality database (Fang et al., 2020).

Native layout: ``Annotations/MOS and Image attribute scores.xlsx`` (first sheet,
header ``Image name, MOS, Brightness, Colorfulness, Contrast, Noisiness,
Sharpness``; MOS on [0, 100]) and the 11,125 images in ``TestImage/``.
"""

from __future__ import annotations

from collections.abc import Mapping

from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import find_header_row, parse_number, read_xlsx_rows, shown
from perceptiq.data.records import DatasetFormatError

LABEL_FILE = "Annotations/MOS and Image attribute scores.xlsx"


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    path = root.require(LABEL_FILE, what="label file")
    where_file = shown(root.root, path)
    rows = read_xlsx_rows(path, where_file)
    header_at, col = find_header_row(rows, ("Image name", "MOS"), where_file)
    records = []
    for number, values in rows[header_at + 1:]:
        if all(v is None for v in values):
            continue
        where = f"{where_file} row {number}"
        name = values[col["Image name"]]
        if name is None:
            raise DatasetFormatError(f"{where}: empty 'Image name' cell")
        records.append(RawRecord(image=(f"TestImage/{str(name).strip()}",),
                                 label=parse_number(values[col["MOS"]], where, "MOS"), origin=where))
    return records
