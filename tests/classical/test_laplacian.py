"""Variance of the Laplacian: hand-computed values and its direction on real photographs."""

from __future__ import annotations

import numpy as np
import pytest

from perceptiq.classical import LaplacianVariance, laplacian, laplacian_variance

from .photos import HELD_OUT_PHOTOS, distort, sample_photo


def test_hand_computed_laplacian_and_variance():
    grey = np.array([[0, 0, 0, 0],
                     [0, 9, 3, 0],
                     [0, 0, 0, 0]], dtype=np.uint8)
    # interior pixels only: (1,1): 0 + 0 + 0 + 3 - 4·9 = -33; (1,2): 0 + 0 + 9 + 0 - 4·3 = -3
    np.testing.assert_array_equal(laplacian(grey.astype(np.float64)), [[-33.0, -3.0]])
    # mean -18, population variance ((-15)² + 15²) / 2 = 225
    assert laplacian_variance(grey.astype(np.float64)) == 225.0
    # the measure on the grey array: luma of grey is grey (weights sum to 1 up to rounding)
    assert LaplacianVariance().score(grey) == pytest.approx(225.0, rel=1e-12)


def test_uses_bt601_luma_of_colour_images():
    rgb = np.zeros((3, 3, 3), dtype=np.uint8)
    rgb[1, 1] = (100, 0, 0)   # luma 29.9 at the centre, 0 elsewhere: one Laplacian value, variance 0
    assert LaplacianVariance().score(rgb) == 0.0
    rgb = np.zeros((3, 4, 3), dtype=np.uint8)
    rgb[1, 1] = (0, 100, 0)   # luma 58.7 at (1,1): values -4·58.7 and 58.7 -> variance (5·58.7/2)²
    assert LaplacianVariance().score(rgb) == pytest.approx((5 * 58.7 / 2) ** 2, rel=1e-12)


def test_a_constant_image_scores_zero_and_tiny_images_are_refused():
    assert LaplacianVariance().score(np.full((10, 10, 3), 200, np.uint8)) == 0.0
    with pytest.raises(ValueError, match="at least 3x3"):
        LaplacianVariance().score(np.zeros((2, 5, 3), np.uint8))


def test_blur_lowers_and_noise_raises_it_on_photos():
    measure = LaplacianVariance()
    for name in HELD_OUT_PHOTOS[:3]:
        pristine = sample_photo(name)
        clean = measure.score(pristine)
        assert measure.score(distort(pristine, "gaussian_blur", 3)) < clean
        assert measure.score(distort(pristine, "white_noise", 3)) > clean   # why it misranks noise
