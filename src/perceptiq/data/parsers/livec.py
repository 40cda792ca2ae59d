"""LIVE In the Wild Image Quality Challenge Database (LIVEC / CLIVE; Ghadiyaram & Bovik, 2015).

Native layout: ``Data/AllImages_release.mat`` (cell ``AllImages_release``, 1169 file
names), ``Data/AllMOS_release.mat`` (``AllMOS_release``, 1169 MOS on [0, 100]),
images in ``Images/``. The first 7 entries are the study's training images (kept in
``Images/trainingImages/``); the literature drops them, leaving the 1,162 test
images that the papers count. Option ``include_training_images=True`` keeps them.
"""

from __future__ import annotations

from collections.abc import Mapping

from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import parse_number, read_mat_variable, shown
from perceptiq.data.records import DatasetFormatError

NAMES_FILE = "Data/AllImages_release.mat"
MOS_FILE = "Data/AllMOS_release.mat"
TRAINING_IMAGES = 7


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    names_path = root.require(NAMES_FILE, what="label file")
    mos_path = root.require(MOS_FILE, what="label file")
    mos_shown = shown(root.root, mos_path)
    names = read_mat_variable(names_path, "AllImages_release", shown(root.root, names_path))
    mos = read_mat_variable(mos_path, "AllMOS_release", mos_shown)
    if len(names) != len(mos):
        raise DatasetFormatError(
            f"{mos_shown}: {len(mos)} MOS values but {NAMES_FILE} names {len(names)} images"
        )
    first = 0 if options.get("include_training_images", False) else TRAINING_IMAGES
    records = []
    for entry in range(first, len(names)):
        where = f"{mos_shown} entry {entry + 1}"
        name = str(names[entry])
        candidates = (f"Images/{name}",) if entry >= TRAINING_IMAGES else (
            f"Images/{name}", f"Images/trainingImages/{name}")
        records.append(RawRecord(image=candidates, label=parse_number(mos[entry], where, "AllMOS_release"),
                                 origin=where))
    return records
