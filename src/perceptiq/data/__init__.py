"""Datasets: a registry of the standard IQA/IAA datasets (one parser per native
layout), the generic CSV, and the records they produce.

Splits (``perceptiq.data.splits``) and the synthetic distortion generator
(``perceptiq.data.synthetic``) are re-exported here.
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
from perceptiq.data.splits import (
    Split,
    SplitFileError,
    SplitMismatchError,
    k_shot_split,
    load_splits,
    make_repeated_splits,
    make_split,
    random_split,
    reference_split,
    save_splits,
    splits_for_datasets,
    subset_fraction_split,
    whole_dataset_split,
)
from perceptiq.data.synthetic import distortion_tasks, get_distortion, list_distortions, synthesize

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
    "Split",
    "SplitFileError",
    "SplitMismatchError",
    "k_shot_split",
    "load_splits",
    "make_repeated_splits",
    "make_split",
    "random_split",
    "reference_split",
    "save_splits",
    "splits_for_datasets",
    "subset_fraction_split",
    "whole_dataset_split",
    "distortion_tasks",
    "get_distortion",
    "list_distortions",
    "synthesize",
]
