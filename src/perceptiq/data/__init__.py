"""Datasets: a registry of the standard IQA/IAA datasets (one parser per native
layout), the generic CSV, and the records they produce.

``perceptiq.data.synthetic`` and ``perceptiq.data.splits`` live beside this package's
registry; import them directly.
"""

from perceptiq.data.generic_csv import load_generic_csv
from perceptiq.data.records import (
    DatasetFormatError,
    DatasetSpec,
    LabelColumn,
    LabeledDataset,
    LabelScale,
    Sample,
)
from perceptiq.data.registry import describe_datasets, get_dataset_spec, list_datasets, load_dataset

__all__ = [
    "DatasetFormatError",
    "DatasetSpec",
    "LabelColumn",
    "LabelScale",
    "LabeledDataset",
    "Sample",
    "describe_datasets",
    "get_dataset_spec",
    "list_datasets",
    "load_dataset",
    "load_generic_csv",
]
