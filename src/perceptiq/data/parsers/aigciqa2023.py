"""AIGCIQA2023 (Wang et al., 2023).

Native layout: ``DATA/MOS/mosz1.mat`` (quality), ``mosz2.mat`` (authenticity),
``mosz3.mat`` (correspondence), each holding variable ``MOSz`` with 2,400 values;
entry i (0-based) labels ``Image/allimg/<i>.png``. The authors' README states the
mosz1/2/3 meanings; the scale (rescaled z-scores) has no published range, so the
registry normalises by the file's min and max.
"""

from __future__ import annotations

from collections.abc import Mapping

from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import parse_number, read_mat_variable, shown

MOS_FILES = {"quality": "DATA/MOS/mosz1.mat", "authenticity": "DATA/MOS/mosz2.mat",
             "correspondence": "DATA/MOS/mosz3.mat"}


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    path = root.require(MOS_FILES[column], what="label file")
    where_file = shown(root.root, path)
    values = read_mat_variable(path, "MOSz", where_file)
    return [
        RawRecord(image=(f"Image/allimg/{index}.png",),
                  label=parse_number(value, f"{where_file} entry {index + 1}", "MOSz"),
                  origin=f"{where_file} entry {index + 1}")
        for index, value in enumerate(values)
    ]
