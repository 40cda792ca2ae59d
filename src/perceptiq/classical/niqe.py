"""NIQE, the "completely blind" natural image quality evaluator (Mittal, Soundararajan & Bovik,
IEEE Signal Processing Letters 20(3):209-212, 2013). Lower = closer to the pristine model = better.

Per image (grey = BT.601 luma on the 0-255 scale, cropped at the bottom/right to whole P x P patches):

1. at two scales -- the image, and the image downsampled by 2 (Pillow bicubic with antialiasing, the
   equivalent of MATLAB's ``imresize(I, 0.5)`` used by the reference implementation) -- MSCN
   coefficients (``nss.mscn``) are cut into non-overlapping patches (P x P, then P/2 x P/2, so both
   scales see the same image regions);
2. per patch and scale, 18 features: GGD fit of the MSCN (shape, variance) and AGGD fits of the four
   paired products (shape, mean, left variance, right variance) of horizontal I(i,j)I(i,j+1),
   vertical I(i,j)I(i+1,j), diagonal I(i,j)I(i+1,j+1) and anti-diagonal I(i,j)I(i+1,j-1) neighbours
   inside the patch -> a (n_patches, 36) matrix;
3. patch sharpness = mean of the local deviation σ (the MSCN denominator) over the patch at scale 1.

Fitting (the pristine model): on each pristine image keep the patches whose sharpness exceeds
``sharpness_threshold`` (0.75, the paper's value) times the image's largest patch sharpness; pool the
kept patches of all images and fit a multivariate Gaussian (mean ν₁, covariance Σ₁, ddof = 1).

Scoring: the MVG (ν₂, Σ₂) of all patches of the image (no sharpness selection), then Eq. 10::

    D = sqrt( (ν₁ - ν₂)ᵀ ((Σ₁ + Σ₂) / 2)⁺ (ν₁ - ν₂) )

with ⁺ the Moore-Penrose pseudo-inverse (eigenvalues below 36 · eps · the largest are treated as 0,
MATLAB's ``pinv`` tolerance). Patches whose features are not finite (a perfectly flat patch has no
distribution to fit) are left out, as the reference implementation's ``nanmean``/``nancov`` do, and
counted in :class:`NIQEScore`.

Differences from the reference MATLAB release, each small and deliberate (docs/classical.md):
paired products are taken only between neighbours inside the patch (the reference's ``circshift``
wraps around the patch edge); the shape is found by interpolating the moment-ratio table instead of
taking its nearest grid point; the luma is not rounded to 8 bits.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import PIL
import scipy
from PIL import Image

from .. import __version__
from .base import ClassicalMeasure
from .images import ImageInputError, ImageSource, describe_source, load_luminance
from .nss import (
    MSCN_C,
    MSCN_WINDOW_SIGMA,
    MSCN_WINDOW_SIZE,
    fit_aggd,
    fit_ggd,
    gaussian_window,
    mscn,
)

FILE_FORMAT = "perceptiq-niqe"
FILE_VERSION = 1
FEATURES_PER_SCALE = 18
N_SCALES = 2
N_FEATURES = FEATURES_PER_SCALE * N_SCALES
DOWNSAMPLING = "pillow-bicubic-antialiased"

#: Names of the 36 features, in column order (scale 1 then scale 2).
FEATURE_NAMES: tuple[str, ...] = tuple(
    f"s{scale}_{name}"
    for scale in (1, 2)
    for name in (
        ["mscn_shape", "mscn_variance"]
        + [f"{direction}_{parameter}" for direction in ("h", "v", "d1", "d2")
           for parameter in ("shape", "mean", "left_variance", "right_variance")]
    )
)


class NIQEInputError(ValueError):
    """An image NIQE cannot score (too small, no textured patch); the message names it and says why."""


@dataclass(frozen=True)
class NIQESettings:
    """Everything that defines the features; stored with the fitted parameters."""

    patch_size: int = 96
    sharpness_threshold: float = 0.75
    mscn_c: float = MSCN_C
    window_size: int = MSCN_WINDOW_SIZE
    window_sigma: float = MSCN_WINDOW_SIGMA
    downsampling: str = DOWNSAMPLING

    def __post_init__(self) -> None:
        if isinstance(self.patch_size, bool) or not isinstance(self.patch_size, (int, np.integer)):
            raise TypeError(f"patch_size must be an integer, got {self.patch_size!r}")
        if self.patch_size < 8 or self.patch_size % 2:
            raise ValueError(f"patch_size must be even and >= 8 (the second scale uses patch_size / 2), got {self.patch_size}")
        if not 0.0 <= self.sharpness_threshold < 1.0:
            raise ValueError(f"sharpness_threshold must be in [0, 1), got {self.sharpness_threshold}")
        if self.downsampling != DOWNSAMPLING:
            raise ValueError(f"downsampling '{self.downsampling}' is not supported (only '{DOWNSAMPLING}')")


@dataclass(frozen=True)
class PatchFeatures:
    """NIQE features of one image: ``features`` (n_patches, 36), ``sharpness`` (n_patches,), row-major
    over a ``grid`` of (rows, cols) patches."""

    features: np.ndarray
    sharpness: np.ndarray
    grid: tuple[int, int]


@dataclass(frozen=True)
class NIQEScore:
    """One image's NIQE distance and how many patches it rests on."""

    score: float
    n_patches: int
    n_used: int  # patches with finite features (the others are flat: no distribution to fit)


def _check_size(height: int, width: int, patch_size: int, name: str) -> tuple[int, int]:
    rows, cols = height // patch_size, width // patch_size
    if rows * cols < 2:
        raise NIQEInputError(
            f"{name}: image is {width}x{height} px; NIQE with patch_size {patch_size} needs at least 2 whole "
            f"{patch_size}x{patch_size} patches (e.g. {2 * patch_size}x{patch_size} or {patch_size}x{2 * patch_size})"
        )
    return rows, cols


def _to_patches(image: np.ndarray, patch: int) -> np.ndarray:
    """(rows*patch, cols*patch) -> (rows*cols, patch, patch), patches in row-major order."""
    rows, cols = image.shape[0] // patch, image.shape[1] // patch
    return image.reshape(rows, patch, cols, patch).transpose(0, 2, 1, 3).reshape(rows * cols, patch, patch)


def scale_features(coefficients: np.ndarray, patch: int) -> np.ndarray:
    """The 18 NIQE features of every patch of an MSCN image at one scale: (n_patches, 18).

    Columns: GGD (shape, variance) of the coefficients, then for the horizontal, vertical, diagonal
    and anti-diagonal paired products an AGGD (shape, mean, left variance, right variance).
    """
    patches = _to_patches(coefficients, patch)
    n = patches.shape[0]
    shape, variance = fit_ggd(patches.reshape(n, -1))
    columns = [shape, variance]
    products = (
        patches[:, :, :-1] * patches[:, :, 1:],        # horizontal: I(i, j) I(i, j+1)
        patches[:, :-1, :] * patches[:, 1:, :],        # vertical:   I(i, j) I(i+1, j)
        patches[:, :-1, :-1] * patches[:, 1:, 1:],     # diagonal:   I(i, j) I(i+1, j+1)
        patches[:, :-1, 1:] * patches[:, 1:, :-1],     # anti-diag.: I(i, j+1) I(i+1, j)
    )
    for product in products:
        columns.extend(fit_aggd(product.reshape(n, -1)))
    return np.stack(columns, axis=1)


def downsample_by_two(grey: np.ndarray) -> np.ndarray:
    """(H, W) -> (H/2, W/2) float64 by Pillow's antialiased bicubic filter on float32 (H, W even)."""
    height, width = grey.shape
    picture = Image.fromarray(np.ascontiguousarray(grey, dtype=np.float32), mode="F")
    return np.asarray(picture.resize((width // 2, height // 2), Image.Resampling.BICUBIC), dtype=np.float64)


def patch_features(grey: np.ndarray, settings: NIQESettings = NIQESettings(), *, name: str = "image") -> PatchFeatures:
    """NIQE features of a (H, W) grey image on the 0-255 scale (see the module docstring)."""
    grey = np.asarray(grey, dtype=np.float64)
    if grey.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D grey image, got shape {grey.shape}")
    patch = int(settings.patch_size)
    rows, cols = _check_size(grey.shape[0], grey.shape[1], patch, name)
    cropped = grey[: rows * patch, : cols * patch]
    window = gaussian_window(settings.window_size, settings.window_sigma)
    coefficients, sigma = mscn(cropped, settings.mscn_c, window)
    first = scale_features(coefficients, patch)
    sharpness = _to_patches(sigma, patch).mean(axis=(1, 2))
    coarse, _ = mscn(downsample_by_two(cropped), settings.mscn_c, window)
    second = scale_features(coarse, patch // 2)
    return PatchFeatures(np.concatenate([first, second], axis=1), sharpness, (rows, cols))


def select_sharp_patches(sharpness: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask of the patches with sharpness > ``threshold`` x the largest (all False if all are 0)."""
    top = float(np.max(sharpness))
    if top <= 0.0:
        return np.zeros(sharpness.shape, dtype=bool)
    return sharpness > threshold * top


def mvg_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """NIQE Eq. 10: sqrt((ν_a - ν_b)ᵀ ((Σ_a + Σ_b) / 2)⁺ (ν_a - ν_b)), ⁺ = pseudo-inverse.

    The pooled covariance is symmetric positive semi-definite, so the pseudo-inverse is taken through
    its eigen-decomposition; eigenvalues <= d · eps · max eigenvalue (d = dimension; MATLAB ``pinv``'s
    tolerance) count as 0, so directions in which neither Gaussian varies are ignored.
    """
    difference = np.asarray(mean_a, dtype=np.float64) - np.asarray(mean_b, dtype=np.float64)
    pooled = (np.asarray(cov_a, dtype=np.float64) + np.asarray(cov_b, dtype=np.float64)) / 2.0
    pooled = (pooled + pooled.T) / 2.0
    eigenvalues, eigenvectors = np.linalg.eigh(pooled)
    largest = float(np.max(np.abs(eigenvalues))) if eigenvalues.size else 0.0
    keep = eigenvalues > difference.size * np.finfo(np.float64).eps * largest
    if not keep.any():
        return 0.0 if not difference.any() else math.inf
    projection = eigenvectors[:, keep].T @ difference
    return float(math.sqrt(float(np.sum(projection**2 / eigenvalues[keep]))))


def _finite_rows(features: np.ndarray) -> np.ndarray:
    return np.all(np.isfinite(features), axis=1)


@dataclass(eq=False)  # parameters are arrays: compare .mean / .covariance explicitly
class NIQEModel(ClassicalMeasure):
    """A fitted pristine model: ``mean`` (36,), ``covariance`` (36, 36), the ``settings`` that define the
    features and ``fit_info`` (what it was fitted on).

    ``NIQEModel.fit(images)`` fits one; ``.score(image)`` -> float (lower = better); ``.save(path)`` /
    ``NIQEModel.load(path)`` keep it as JSON.
    """

    mean: np.ndarray
    covariance: np.ndarray
    settings: NIQESettings = field(default_factory=NIQESettings)
    fit_info: dict = field(default_factory=dict)

    name = "niqe"

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.covariance = np.asarray(self.covariance, dtype=np.float64)
        if self.mean.shape != (N_FEATURES,) or self.covariance.shape != (N_FEATURES, N_FEATURES):
            raise ValueError(
                f"NIQE parameters must be a mean of shape ({N_FEATURES},) and a covariance of shape "
                f"({N_FEATURES}, {N_FEATURES}); got {self.mean.shape} and {self.covariance.shape}"
            )
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.covariance))):
            raise ValueError("NIQE parameters contain non-finite values")

    # -- fitting ------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        images: Iterable[ImageSource],
        *,
        patch_size: int = 96,
        sharpness_threshold: float = 0.75,
        progress: Callable[[int], None] | None = None,
    ) -> NIQEModel:
        """Fit the pristine MVG on ``images`` (paths, PIL images or (H, W, 3) uint8 arrays).

        An image that cannot be read, or is smaller than 2 patches, is skipped with a ``UserWarning``
        and listed in ``fit_info["skipped"]``; if no patch is left at all a ``ValueError`` says why.
        """
        settings = NIQESettings(patch_size=patch_size, sharpness_threshold=sharpness_threshold)
        selected: list[np.ndarray] = []
        per_image: list[dict] = []
        skipped: list[dict] = []
        n_total = n_dropped = 0
        for done, image in enumerate(images, start=1):
            name = describe_source(image)
            try:
                found = patch_features(load_luminance(image), settings, name=name)
            except (ImageInputError, NIQEInputError) as error:
                warnings.warn(f"NIQE fit: skipping {error}", UserWarning, stacklevel=2)
                skipped.append({"source": name, "error": str(error)})
                continue
            finally:
                if progress is not None:
                    progress(done)
            sharp = select_sharp_patches(found.sharpness, settings.sharpness_threshold)
            finite = _finite_rows(found.features)
            kept = found.features[sharp & finite]
            n_total += found.features.shape[0]
            n_dropped += int(np.sum(sharp & ~finite))
            selected.append(kept)
            per_image.append({"source": name, "patches": int(found.features.shape[0]), "selected": int(kept.shape[0])})
        pooled = np.concatenate(selected, axis=0) if selected else np.empty((0, N_FEATURES))
        if pooled.shape[0] < 2:
            reasons = "; ".join(f"{item['source']}: {item['error']}" for item in skipped[:5])
            raise ValueError(
                f"NIQE fit: need at least 2 sharp patches with finite features over all images, got "
                f"{pooled.shape[0]} from {len(per_image)} usable image(s)" + (f" (skipped: {reasons})" if reasons else "")
            )
        fit_info = {
            "n_images": len(per_image),
            "n_patches": n_total,
            "n_patches_selected": int(pooled.shape[0]),
            "n_sharp_patches_dropped_nonfinite": n_dropped,
            "images": per_image,
            "skipped": skipped,
            "versions": {"perceptiq": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
                         "Pillow": PIL.__version__},
        }
        return cls(pooled.mean(axis=0), np.cov(pooled, rowvar=False, ddof=1), settings, fit_info)

    # -- scoring ------------------------------------------------------------------------------------
    def features(self, image: ImageSource) -> PatchFeatures:
        """The (n_patches, 36) NIQE features of ``image`` under this model's settings."""
        return patch_features(load_luminance(image), self.settings, name=describe_source(image))

    def score_details(self, image: ImageSource) -> NIQEScore:
        """The NIQE distance of ``image`` and the number of patches it rests on."""
        found = self.features(image)
        finite = _finite_rows(found.features)
        used = found.features[finite]
        if used.shape[0] < 2:
            raise NIQEInputError(
                f"{describe_source(image)}: only {used.shape[0]} of {found.features.shape[0]} patches have texture "
                "(the others are perfectly flat); NIQE needs at least 2"
            )
        distance = mvg_distance(self.mean, self.covariance, used.mean(axis=0), np.cov(used, rowvar=False, ddof=1))
        return NIQEScore(distance, int(found.features.shape[0]), int(used.shape[0]))

    def score(self, image: ImageSource) -> float:
        """NIQE of one image: >= 0, lower = closer to the pristine model (better)."""
        return self.score_details(image).score

    # -- files --------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "settings": asdict(self.settings),
            "feature_names": list(FEATURE_NAMES),
            "mean": self.mean.tolist(),
            "covariance": self.covariance.tolist(),
            "fit": self.fit_info,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the parameters, settings and fitting record as JSON (floats round-trip exactly)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> NIQEModel:
        """Read a file written by :meth:`save`; a wrong format, version or shape raises naming the file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: NIQE parameter file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a readable NIQE parameter file ({error})") from None
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise ValueError(f"{path}: not a NIQE parameter file (format is not '{FILE_FORMAT}')")
        if data.get("version") != FILE_VERSION:
            raise ValueError(f"{path}: NIQE parameter file version {data.get('version')!r}; this perceptiq reads {FILE_VERSION}")
        missing = [key for key in ("settings", "mean", "covariance") if key not in data]
        if missing:
            raise ValueError(f"{path}: NIQE parameter file lacks {missing}")
        try:
            settings = NIQESettings(**data["settings"])
            return cls(np.asarray(data["mean"], dtype=np.float64), np.asarray(data["covariance"], dtype=np.float64),
                       settings, dict(data.get("fit", {})))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: invalid NIQE parameters ({error})") from None

    def __repr__(self) -> str:
        info = self.fit_info
        return (f"NIQEModel(patch_size={self.settings.patch_size}, images={info.get('n_images', '?')}, "
                f"patches={info.get('n_patches_selected', '?')})")

