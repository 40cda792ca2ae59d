"""CSIQ (Larson & Chandler, 2010).

Native layout: ``csiq.DMOS.xlsx``, sheet ``all_by_image``, whose header row (row 4 in
the release) holds ``image, dst_idx, dst_type, dst_lev, dmos_std, dmos``; distorted
images ``dst_imgs/<folder>/<image>.<TOKEN>.<level>.png``; references
``src_imgs/<image>.png``. The sheet names a distortion (``noise``, ``jpeg 2000``, ...)
differently from its folder and file token, mapped below. Only rated images are
listed in the sheet (866).
"""

from __future__ import annotations

from collections.abc import Mapping

from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import (
    find_header_row,
    parse_integer,
    parse_number,
    read_xlsx_rows,
    shown,
)
from perceptiq.data.records import DatasetFormatError

LABEL_FILE = "csiq.DMOS.xlsx"
SHEET = "all_by_image"
#: dst_type in the sheet -> (folder under dst_imgs, token in the file name)
DISTORTION_FILES = {
    "noise": ("awgn", "AWGN"),
    "jpeg": ("jpeg", "JPEG"),
    "jpeg 2000": ("jpeg2000", "jpeg2000"),
    "fnoise": ("fnoise", "fnoise"),
    "blur": ("blur", "BLUR"),
    "contrast": ("contrast", "contrast"),
}
COLUMNS = ("image", "dst_type", "dst_lev", "dmos")


def _image_name(value: object) -> str:
    # Numeric names (1600) come back from Excel as numbers.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    path = root.require(LABEL_FILE, what="label file")
    where_file = shown(root.root, path)
    rows = read_xlsx_rows(path, where_file, SHEET)
    header_at, col = find_header_row(rows, COLUMNS, f"{where_file} sheet '{SHEET}'")
    records: list[RawRecord] = []
    for number, values in rows[header_at + 1:]:
        if all(v is None for v in values):
            continue
        where = f"{where_file} sheet '{SHEET}' row {number}"
        image, dst_type = values[col["image"]], values[col["dst_type"]]
        if image is None or dst_type is None:
            raise DatasetFormatError(f"{where}: empty 'image' or 'dst_type' cell")
        dst_type = str(dst_type).strip().casefold()
        if dst_type not in DISTORTION_FILES:
            raise DatasetFormatError(
                f"{where}: unknown dst_type '{dst_type}' (known: {sorted(DISTORTION_FILES)})"
            )
        folder, token = DISTORTION_FILES[dst_type]
        level = parse_integer(values[col["dst_lev"]], where, "dst_lev")
        name = _image_name(image)
        records.append(
            RawRecord(
                image=(f"dst_imgs/{folder}/{name}.{token}.{level}.png",),
                label=parse_number(values[col["dmos"]], where, "dmos"),
                origin=where,
                ref=name,
                distortion=dst_type,
                level=level,
            )
        )
    return records
