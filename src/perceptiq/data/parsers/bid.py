"""BID, Blurred Image Database (Ciancio et al., 2011).

Native layout: ``DatabaseGrades.xlsx`` (first sheet; row 1 is the header, then
column A = image number, column B = mean grade on 0..5) and the 586 images named
``DatabaseImage<NNNN>.JPG`` in ``ImageDatabase/`` (or beside the workbook).
"""

from __future__ import annotations

from collections.abc import Mapping

from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import parse_integer, parse_number, read_xlsx_rows, shown
from perceptiq.data.records import DatasetFormatError

LABEL_FILE = "DatabaseGrades.xlsx"
IMAGE_FOLDERS = ("ImageDatabase/", "")


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    path = root.require(LABEL_FILE, what="label file")
    where_file = shown(root.root, path)
    records = []
    for number, values in read_xlsx_rows(path, where_file)[1:]:
        if all(v is None for v in values):
            continue
        where = f"{where_file} row {number}"
        if len(values) < 2:
            raise DatasetFormatError(f"{where}: expected image number and grade in columns A and B")
        image_number = parse_integer(values[0], where, "image number")
        name = f"DatabaseImage{image_number:04d}.JPG"
        records.append(RawRecord(image=tuple(folder + name for folder in IMAGE_FOLDERS),
                                 label=parse_number(values[1], where, "grade"), origin=where))
    return records
