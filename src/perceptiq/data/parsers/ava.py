"""AVA, Aesthetic Visual Analysis (Murray et al., 2012).

Native layout: ``AVA.txt``, one image per line, 15 whitespace-separated fields:
index, image id, the counts of votes for scores 1..10, semantic tag 1, semantic
tag 2, challenge id. Images are ``<image id>.jpg``, in ``images/`` (some copies nest
``images/images/``). The label is the mean vote, sum(k * count_k) / sum(count_k),
on 1..10. The file lists ~255.5k images; common downloads miss a few, so
``missing="skip"`` is the practical way to load it (the skipped ids are reported).
"""

from __future__ import annotations

from collections.abc import Mapping

from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import parse_integer, read_text_rows, shown
from perceptiq.data.records import DatasetFormatError

LABEL_FILE = "AVA.txt"
FIELDS = 15
IMAGE_FOLDERS = ("images/", "images/images/", "image/")


def mean_vote(counts: list[int]) -> float:
    """Mean score of votes given as counts for scores 1..len(counts)."""
    total = sum(counts)
    return sum(score * count for score, count in enumerate(counts, 1)) / total


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    path = root.require(LABEL_FILE, "AVA_dataset/AVA.txt", what="label file")
    where_file = shown(root.root, path)
    records = []
    for number, fields in read_text_rows(path, where_file):
        where = f"{where_file} row {number}"
        if len(fields) != FIELDS:
            raise DatasetFormatError(f"{where}: {len(fields)} fields, AVA.txt rows have {FIELDS}")
        image_id = fields[1]
        counts = [parse_integer(value, where, f"votes for {score}") for score, value in enumerate(fields[2:12], 1)]
        if sum(counts) <= 0 or min(counts) < 0:
            raise DatasetFormatError(f"{where}: vote counts {counts} give no mean score")
        records.append(RawRecord(image=tuple(f"{folder}{image_id}.jpg" for folder in IMAGE_FOLDERS),
                                 label=mean_vote(counts), origin=where))
    return records
