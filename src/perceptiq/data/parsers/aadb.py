"""AADB, Aesthetics and Attributes Database (Kong et al., 2016).

Native layout: ``imgListFiles_label/`` with ``imgListTrainRegression_score.txt``
(8,500), ``imgListValidationRegression_score.txt`` (500) and
``imgListTestNewRegression_score.txt`` (1,000), each line ``<image name> <score>``
with the score on [0, 1]. Training and validation images are in
``datasetImages_originalSize/``, test images in ``AADB_newtest_originalSize/`` (also
seen as ``AADB_newtest/``). All three lists are read: 10,000 images.
"""

from __future__ import annotations

from collections.abc import Mapping

from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import parse_number, read_text_rows, shown
from perceptiq.data.records import DatasetFormatError

LABEL_FOLDER = "imgListFiles_label"
#: label list -> folders holding its images
LISTS = {
    "imgListTrainRegression_score.txt": ("datasetImages_originalSize",),
    "imgListValidationRegression_score.txt": ("datasetImages_originalSize",),
    "imgListTestNewRegression_score.txt": ("AADB_newtest_originalSize", "AADB_newtest"),
}


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    records = []
    for list_name, folders in LISTS.items():
        path = root.require(f"{LABEL_FOLDER}/{list_name}", list_name, what="label file")
        where_file = shown(root.root, path)
        for number, fields in read_text_rows(path, where_file):
            where = f"{where_file} row {number}"
            if len(fields) != 2:
                raise DatasetFormatError(f"{where}: expected '<image> <score>', found {' '.join(fields)!r}")
            name, score = fields
            records.append(RawRecord(image=tuple(f"{folder}/{name}" for folder in folders),
                                     label=parse_number(score, where, "score"), origin=where))
    return records
