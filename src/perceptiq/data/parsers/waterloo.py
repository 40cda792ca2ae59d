"""Waterloo Exploration Database (Ma et al., 2017) — unlabelled, used for gMAD.

Native layout: ``exploration_database_and_code/pristine_images/00001.bmp`` ..
``04744.bmp``; the root may be the archive's top folder or
``exploration_database_and_code`` itself. Only the pristine images are listed:
distorted versions are produced by the authors' MATLAB code (or by
``perceptiq.data.synthetic``), not read here. Labels are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from perceptiq.data.parsers._base import RawRecord
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.parsers._readers import shown

IMAGE_FOLDERS = ("pristine_images", "exploration_database_and_code/pristine_images")
IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg")


def parse(root: CaseInsensitiveRoot, column: str, options: Mapping[str, object]) -> list[RawRecord]:
    folder = root.require(*IMAGE_FOLDERS, what="folder")
    relative = shown(root.root, folder)
    return [
        RawRecord(image=(f"{relative}/{path.name}",), label=math.nan, origin=f"{relative}/{path.name}")
        for path in sorted(folder.iterdir(), key=lambda p: p.name)
        if path.is_file() and path.suffix.casefold() in IMAGE_SUFFIXES
    ]
