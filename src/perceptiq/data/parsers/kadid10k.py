"""KADID-10k (Lin, Hosu & Saupe, 2019).

Native layout: ``dmos.csv`` with columns ``dist_img, ref_img, dmos, var`` and all
images (distorted ``IXX_YY_ZZ.png`` and references ``IXX.png``) in ``images/``.
Despite its name the ``dmos`` column is a mean of degradation category ratings on
1 (imperceptible... bad) to 5 — higher is better — so it is treated as a MOS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath

from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import parse_number, read_csv_rows, shown
from perceptiq.data.records import DatasetFormatError

LABEL_FILE = "dmos.csv"
NAME_PATTERN = re.compile(r"^(I\d+)_(\d+)_(\d+)\.png$", re.IGNORECASE)


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    path = root.require(LABEL_FILE, what="label file")
    where_file = shown(root.root, path)
    records: list[RawRecord] = []
    for number, row in read_csv_rows(path, ("dist_img", "ref_img", "dmos"), where_file):
        where = f"{where_file} row {number}"
        name = row["dist_img"]
        match = NAME_PATTERN.match(name)
        if match is None:
            raise DatasetFormatError(f"{where}: dist_img '{name}' is not of the form IXX_YY_ZZ.png")
        _, distortion, level = match.groups()
        records.append(
            RawRecord(
                image=(f"images/{name}",),
                label=parse_number(row["dmos"], where, "dmos"),
                origin=where,
                ref=PurePosixPath(row["ref_img"]).stem.upper(),
                distortion=distortion,
                level=int(level),
            )
        )
    return records
