"""Classical, training-free no-reference quality measures (numpy, scipy and Pillow only; no model code).

    from perceptiq.classical import NIQEModel, LaplacianVariance, list_measures
    niqe = NIQEModel.fit(pristine_paths)          # the pristine multivariate Gaussian; .save / .load
    niqe.score("photo.png")                      # lower = better
    LaplacianVariance().score("photo.png")       # higher = sharper
    scores = niqe.score_many(paths)              # MeasureScores: nan + error per unreadable image

Metadata (direction, score range, citation) is data: classical/catalog.yaml, ``list_measures()``.
See docs/classical.md.
"""

from .base import ClassicalMeasure, MeasureScores
from .catalog import MeasureSpec, create_measure, get_measure_spec, list_measures
from .images import ImageInputError, load_luminance, load_rgb_array, luminance
from .laplacian import LaplacianVariance, laplacian, laplacian_variance
from .niqe import (
    FEATURE_NAMES,
    NIQEInputError,
    NIQEModel,
    NIQEScore,
    NIQESettings,
    PatchFeatures,
    mvg_distance,
    patch_features,
)
from .nss import (
    fit_aggd,
    fit_ggd,
    gaussian_window,
    moment_ratio,
    mscn,
    shape_from_ratio,
)

__all__ = [
    "FEATURE_NAMES",
    "ClassicalMeasure",
    "ImageInputError",
    "LaplacianVariance",
    "MeasureScores",
    "MeasureSpec",
    "NIQEInputError",
    "NIQEModel",
    "NIQEScore",
    "NIQESettings",
    "PatchFeatures",
    "create_measure",
    "fit_aggd",
    "fit_ggd",
    "gaussian_window",
    "get_measure_spec",
    "laplacian",
    "laplacian_variance",
    "list_measures",
    "load_luminance",
    "load_rgb_array",
    "luminance",
    "moment_ratio",
    "mscn",
    "mvg_distance",
    "patch_features",
    "shape_from_ratio",
]
