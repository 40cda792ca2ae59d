"""The quality label of a synthetic image: a pseudo-MOS in [0, 1] from a colour SSIM.

SSIM (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004, Eq. 13):

    SSIM(x, y) = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))

with local statistics under a Gaussian window (sigma 1.5 px, 11 x 11 taps), C1 = (K1 L)^2,
C2 = (K2 L)^2, K1 = 0.01, K2 = 0.03, L = 1, averaged over the image at full resolution.
Luma-only SSIM is blind to chroma (desaturation, colour diffusion would score ~1 at every level), so the
label averages SSIM over the Y, Cb and Cr planes with weights favouring luma:

    label = clip(w_Y SSIM(Y) + w_Cb SSIM(Cb) + w_Cr SSIM(Cr), 0, 1)

There is no downsampling to a viewing scale first: with integer box factors it hides
exactly-aligned distortions (2 x 2 pixelation scored 1.0 on a 512 px image).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from .colour import rgb_to_ycbcr


@dataclass(frozen=True)
class LabelDefinition:
    """Parameters of the pseudo-MOS; ``describe()`` goes into the dataset manifest."""

    channel_weights: tuple[float, float, float] = (0.8, 0.1, 0.1)  # Y, Cb, Cr
    window_sigma: float = 1.5
    window_truncate: float = 3.5  # 1.5 * 3.5 -> radius 5 -> 11 x 11 window, as in the SSIM paper
    k1: float = 0.01
    k2: float = 0.03

    def describe(self) -> dict:
        return {
            "name": "colour-SSIM pseudo-MOS",
            "formula": "clip(wY*SSIM(Y) + wCb*SSIM(Cb) + wCr*SSIM(Cr), 0, 1); BT.601 full-range YCbCr; "
            "mean SSIM map with a Gaussian window, full resolution",
            "range": [0.0, 1.0],
            "higher_is_better": True,
            "reference_score": 1.0,
            **asdict(self),
        }


DEFAULT_LABEL = LabelDefinition()


class ReferenceSSIM:
    """Colour-SSIM scorer for one reference, with its local statistics computed once.

    A reference is compared with 125 distortions of itself; caching its mean and
    variance maps saves two of the five Gaussian filterings per comparison.
    ``reference`` is (H, W, 3) sRGB in [0, 1].
    """

    def __init__(self, reference: np.ndarray, definition: LabelDefinition = DEFAULT_LABEL):
        self.definition = definition
        self.planes = rgb_to_ycbcr(reference)  # (H, W, 3): Y, Cb, Cr
        self.mean = self._local_mean(self.planes)
        self.variance = self._local_mean(self.planes**2) - self.mean**2

    def _local_mean(self, planes: np.ndarray) -> np.ndarray:
        d = self.definition
        return ndimage.gaussian_filter(
            planes, sigma=(d.window_sigma, d.window_sigma, 0.0), truncate=d.window_truncate, mode="reflect"
        )

    def ssim_per_plane(self, distorted: np.ndarray) -> np.ndarray:
        """Mean SSIM of Y, Cb and Cr, shape (3,), against ``distorted`` (H, W, 3) sRGB in [0, 1]."""
        if distorted.shape != self.planes.shape:
            raise ValueError(f"reference {self.planes.shape} and distorted {distorted.shape} differ in shape")
        c1, c2 = self.definition.k1**2, self.definition.k2**2
        planes = rgb_to_ycbcr(distorted)
        mean = self._local_mean(planes)
        variance = self._local_mean(planes**2) - mean**2
        covariance = self._local_mean(planes * self.planes) - mean * self.mean
        numerator = (2 * mean * self.mean + c1) * (2 * covariance + c2)
        denominator = (mean**2 + self.mean**2 + c1) * (variance + self.variance + c2)
        return (numerator / denominator).mean(axis=(0, 1))

    def score(self, distorted: np.ndarray) -> float:
        """The pseudo-MOS of ``distorted``: weighted plane SSIM clipped to [0, 1]; 1.0 = identical."""
        weights = np.asarray(self.definition.channel_weights, dtype=np.float64)
        combined = float(self.ssim_per_plane(distorted) @ weights / weights.sum())
        return float(np.clip(combined, 0.0, 1.0))


def pseudo_mos(reference: np.ndarray, distorted: np.ndarray, definition: LabelDefinition = DEFAULT_LABEL) -> float:
    """Label of ``distorted`` against ``reference`` (both (H, W, 3) sRGB in [0, 1]); 1.0 = identical."""
    return ReferenceSSIM(reference, definition).score(distorted)
