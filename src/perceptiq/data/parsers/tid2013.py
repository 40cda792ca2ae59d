"""TID2013 (Ponomarenko et al., 2013/2015).

Native layout: ``mos_with_names.txt``, one ``<MOS> <image name>`` per line;
distorted images ``distorted_images/iXX_YY_Z.bmp`` (XX reference 01..25, YY
distortion type 01..24, Z level 1..5); references ``reference_images/IXX.BMP``. The
release mixes ``i``/``I`` and ``.bmp``/``.BMP``: names resolve case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import parse_number, read_text_rows, shown
from perceptiq.data.records import DatasetFormatError

LABEL_FILE = "mos_with_names.txt"
NAME_PATTERN = re.compile(r"^(i\d\d)_(\d\d)_(\d)\.bmp$", re.IGNORECASE)


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    path = root.require(LABEL_FILE, what="label file")
    where_file = shown(root.root, path)
    records: list[RawRecord] = []
    for number, fields in read_text_rows(path, where_file):
        where = f"{where_file} row {number}"
        if len(fields) != 2:
            raise DatasetFormatError(f"{where}: expected '<MOS> <image name>', found {' '.join(fields)!r}")
        score_text, name = fields
        match = NAME_PATTERN.match(name)
        if match is None:
            raise DatasetFormatError(f"{where}: image name '{name}' is not of the form iXX_YY_Z.bmp")
        ref, distortion, level = match.groups()
        records.append(
            RawRecord(
                image=(f"distorted_images/{name}",),
                label=parse_number(score_text, where, "MOS"),
                origin=where,
                ref=ref.upper(),
                distortion=distortion,
                level=int(level),
            )
        )
    return records
