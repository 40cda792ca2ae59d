"""LIVE Image Quality Assessment Database, release 2 (Sheikh et al., 2006).

Native layout: ``refnames_all.mat`` (cell ``refnames_all``, 1 x 982: reference image
of every entry), ``dmos.mat`` (``dmos``, ``orgs``: 1 x 982) and
``dmos_realigned.mat`` (``dmos_new``, ``orgs``, ``dmos_std``). The 982 entries run
through the distortion folders in a fixed order — jp2k (227), jpeg (233), wn (174),
gblur (174), fastfading (174) — entry k of a folder being ``<folder>/img<k>.bmp``.
``orgs == 1`` marks copies of the reference inside the folders; they are dropped,
which leaves the 779 distorted images. LIVE has no discrete distortion levels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import parse_integer, parse_number, read_mat_variable, shown
from perceptiq.data.records import DatasetFormatError

#: (folder, number of entries) in the order of the .mat vectors; fixed by the release.
FOLDER_ORDER = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))

#: label column key -> (file, DMOS variable)
DMOS_FILES = {"dmos_realigned": ("dmos_realigned.mat", "dmos_new"), "dmos": ("dmos.mat", "dmos")}


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    file_name, variable = DMOS_FILES[column]
    dmos_path = root.require(file_name, what="label file")
    refs_path = root.require("refnames_all.mat", what="label file")
    dmos_shown, refs_shown = shown(root.root, dmos_path), shown(root.root, refs_path)
    dmos = read_mat_variable(dmos_path, variable, dmos_shown)
    orgs = read_mat_variable(dmos_path, "orgs", dmos_shown)
    refnames = read_mat_variable(refs_path, "refnames_all", refs_shown)

    expected = sum(count for _, count in FOLDER_ORDER)
    for name, values, where in ((variable, dmos, dmos_shown), ("orgs", orgs, dmos_shown),
                                ("refnames_all", refnames, refs_shown)):
        if len(values) != expected:
            raise DatasetFormatError(f"{where}: '{name}' has {len(values)} entries, LIVE release 2 has {expected}")

    records: list[RawRecord] = []
    entry = 0
    for folder, count in FOLDER_ORDER:
        for index_in_folder in range(1, count + 1):
            where = f"{dmos_shown} entry {entry + 1}"
            is_reference_copy = parse_integer(orgs[entry], where, "orgs") == 1
            if not is_reference_copy:
                records.append(
                    RawRecord(
                        image=(f"{folder}/img{index_in_folder}.bmp",),
                        label=parse_number(dmos[entry], where, variable),
                        origin=where,
                        ref=PurePosixPath(str(refnames[entry])).stem,
                        distortion=folder,
                    )
                )
            entry += 1
    return records
