"""KonIQ-10k (Hosu et al., 2020).

Native layout: ``koniq10k_scores_and_distributions.csv`` with columns
``image_name, c1..c5, c_total, MOS, SD, MOS_zscore``; images in ``1024x768/`` (the
release also offers ``512x384/``, chosen with option ``images="512x384"``).
``MOS`` is the mean of 1..5 ratings; ``MOS_zscore`` is the z-scored MOS rescaled to
[0, 100] — the range Gamma's Table 9 lists, hence the default column.
"""

from __future__ import annotations

from collections.abc import Mapping

from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import parse_number, read_csv_rows, shown

LABEL_FILE = "koniq10k_scores_and_distributions.csv"
#: label column key -> CSV column
CSV_COLUMNS = {"mos_zscore": "MOS_zscore", "mos": "MOS"}
IMAGE_FOLDERS = ("1024x768", "512x384")


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    folder = str(options.get("images", IMAGE_FOLDERS[0]))
    if folder not in IMAGE_FOLDERS:
        raise ValueError(f"koniq10k: option images={folder!r}; choose one of {IMAGE_FOLDERS}")
    csv_column = CSV_COLUMNS[column]
    path = root.require(LABEL_FILE, what="label file")
    where_file = shown(root.root, path)
    return [
        RawRecord(
            image=(f"{folder}/{row['image_name']}",),
            label=parse_number(row[csv_column], f"{where_file} row {number}", csv_column),
            origin=f"{where_file} row {number}",
        )
        for number, row in read_csv_rows(path, ("image_name", csv_column), where_file)
    ]
