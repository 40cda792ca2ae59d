"""PIPAL (Gu et al., 2020), public training part as released for NTIRE 2021.

Native layout: ``Train_Label/AXXXX.txt``, one file per reference, each line
``AXXXX_TT_VV.bmp,<Elo score>``; references ``Train_Ref/AXXXX.bmp``; distorted
images spread over ``Distortion_1`` .. ``Distortion_4`` (the official loader finds
them by file name, so this parser does too: each name must occur once under the
root). ``TT`` is the distortion category and ``VV`` the method/setting inside it —
not a severity — so ``distortion`` is ``TT`` and ``level`` stays None. Labels are
Elo ratings (higher = better) with no fixed range.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from perceptiq.data.parsers._base import ANYWHERE, RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import parse_number, read_text_rows, shown
from perceptiq.data.records import DatasetFormatError

LABEL_FOLDER = "Train_Label"
NAME_PATTERN = re.compile(r"^(A\d+)_(\d+)_(\d+)\.bmp$", re.IGNORECASE)


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    label_files = [p for p in root.files_in(LABEL_FOLDER) if p.suffix.casefold() == ".txt"]
    if not label_files:
        raise FileNotFoundError(root.missing_message([f"{LABEL_FOLDER}/*.txt"], "label files"))
    records = []
    for path in label_files:
        where_file = shown(root.root, path)
        for number, fields in read_text_rows(path, where_file, separator=","):
            where = f"{where_file} row {number}"
            if len(fields) != 2:
                raise DatasetFormatError(f"{where}: expected '<image>,<score>', found {','.join(fields)!r}")
            name, score = fields
            match = NAME_PATTERN.match(name)
            if match is None:
                raise DatasetFormatError(f"{where}: image name '{name}' is not of the form AXXXX_TT_VV.bmp")
            ref, category, _variant = match.groups()
            records.append(RawRecord(image=(ANYWHERE + name,), label=parse_number(score, where, "score"),
                                     origin=where, ref=ref.upper(), distortion=category))
    return records
