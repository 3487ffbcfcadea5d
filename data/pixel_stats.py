"""Exact, streaming statistics of a training set's pixels (0-255 scale).

    stats = PixelStats(size)
    stats.add(image)                     # (S, S, 3) uint8, one at a time, any order
    stats.add_sums(image, rgb_sum, rgb_outer)   # when a worker already computed the sums
    mean_image, eigval, eigvec, pixel_std = stats.finish()

Exactness: every sum is an integer. Per image, ``image_sums`` gives the RGB sum (3,) and
the sum of outer products x x^T (3, 3) over its S*S pixels in int64; the accumulator keeps
Python ints for the set totals and an int64 (S, S, 3) sum for the mean image (at most
1.3M images * 255 < 2^63). The final divisions are done on exact integers, so

    mean_image = sum_images / N                                       (S, S, 3) float64
    cov        = (P * sum x x^T - (sum x)(sum x)^T) / P^2,  P = N*S*S pixels  (3, 3)

are correctly rounded float64 numbers whatever the order of ``add`` calls. ``cov`` is
the population covariance (divide by P, not P - 1). Its eigen-decomposition gives

    eigval (3,)   descending (largest first), the variances along the principal axes
    eigvec (3, 3) eigvec[:, i] is the unit eigenvector of eigval[i]; each column's entry
                  of largest magnitude is made positive (signs are otherwise arbitrary)
    pixel_std (3,) sqrt(diag(cov)), the per-channel standard deviation

Inputs scaled by the pixel std (``input_scale``) are divided by ``max(std, MIN_PIXEL_STD)``
per channel: a channel that varies by less than one grey level over the training set
(say a colour channel that is 0 in every image) is left unscaled instead of being
divided by zero or by a tiny number. After the mean image is subtracted such a channel
is (nearly) zero everywhere, so it adds nothing to learn and nothing to overflow. This is
the one place the rule is written; training, evaluation, prediction and the neighbours
search all use it.
"""

from __future__ import annotations

from fractions import Fraction

import numpy
from numpy.typing import ArrayLike

CHANNELS = ("R", "G", "B")
MIN_PIXEL_STD = 1.0  # one grey level on the 0-255 scale: below it a channel is not scaled


def image_sums(image: ArrayLike) -> tuple[numpy.ndarray, numpy.ndarray]:
    """(rgb_sum (3,) int64, rgb_outer (3, 3) int64) of one (S, S, 3) uint8 image."""
    x = numpy.asarray(image, dtype=numpy.int64).reshape(-1, 3)  # (S*S, 3)
    return x.sum(axis=0), x.T @ x


class PixelStats:
    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0
        self.image_sum = numpy.zeros((size, size, 3), dtype=numpy.int64)
        self.rgb_sum = [0, 0, 0]
        self.rgb_outer = [[0] * 3 for _ in range(3)]

    def add(self, image: numpy.ndarray) -> None:
        """Add one (S, S, 3) uint8 image."""
        s, o = image_sums(image)
        self.add_sums(image, s, o)

    def add_sums(
        self, image: numpy.ndarray, rgb_sum: numpy.ndarray, rgb_outer: numpy.ndarray
    ) -> None:
        """Add one image whose ``image_sums`` are already known."""
        if image.shape != (self.size, self.size, 3) or image.dtype != numpy.uint8:
            raise ValueError(
                f"PixelStats: expected ({self.size}, {self.size}, 3) uint8, "
                f"got {image.shape} {image.dtype}"
            )
        self.image_sum += image
        for i in range(3):
            self.rgb_sum[i] += int(rgb_sum[i])
            for j in range(3):
                self.rgb_outer[i][j] += int(rgb_outer[i][j])
        self.count += 1

    def finish(self) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]:
        """(mean_image, eigval, eigvec, pixel_std), all float64; see the module doc."""
        if self.count == 0:
            raise ValueError("PixelStats: no images were added")
        mean_image = self.image_sum / float(self.count)  # exact int64 / N, correctly rounded
        p = self.count * self.size * self.size
        cov = numpy.empty((3, 3), dtype=numpy.float64)
        for i in range(3):
            for j in range(3):
                num = p * self.rgb_outer[i][j] - self.rgb_sum[i] * self.rgb_sum[j]
                cov[i, j] = float(Fraction(num, p * p))
        eigval, eigvec = principal_axes(cov)
        pixel_std = numpy.sqrt(numpy.diag(cov))
        return mean_image, eigval, eigvec, pixel_std


def principal_axes(cov: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Eigenvalues (descending, clipped at 0) and unit eigenvectors (columns) of ``cov``."""
    eigval, eigvec = numpy.linalg.eigh(cov)  # ascending
    order = numpy.argsort(eigval)[::-1]
    eigval, eigvec = numpy.maximum(eigval[order], 0.0), eigvec[:, order]
    largest = numpy.argmax(numpy.abs(eigvec), axis=0)
    signs = numpy.sign(eigvec[largest, numpy.arange(3)])
    signs[signs == 0] = 1.0
    return eigval, eigvec * signs


def input_scale(pixel_std: ArrayLike) -> numpy.ndarray:
    """The per-channel factor (3,) float64 that ``input_scale="pixel_std"`` multiplies
    mean-subtracted inputs by: ``1 / max(std, MIN_PIXEL_STD)`` (module doc); a NaN std
    (never from ``finish``) counts as below the floor."""
    std = numpy.asarray(pixel_std, dtype=numpy.float64)
    return 1.0 / numpy.where(std >= MIN_PIXEL_STD, std, MIN_PIXEL_STD)


def flat_channels(pixel_std: ArrayLike) -> list[str]:
    """The names ("R", "G", "B") of the channels whose std is below ``MIN_PIXEL_STD``:
    those ``input_scale`` leaves unscaled."""
    std = numpy.asarray(pixel_std, dtype=numpy.float64)
    return [name for name, s in zip(CHANNELS, std, strict=True) if not s >= MIN_PIXEL_STD]


def flat_notice(pixel_std: ArrayLike) -> str:
    """One sentence naming the flat channels and their std, or "" when there are none."""
    std = numpy.asarray(pixel_std, dtype=numpy.float64)
    flat = flat_channels(std)
    if not flat:
        return ""
    values = ", ".join(f"{std[CHANNELS.index(c)]:.3g}" for c in flat)
    return (
        f"channel {'/'.join(flat)} of the training images varies by less than "
        f"{MIN_PIXEL_STD:g} grey level (pixel std {values}): inputs divided by the pixel std "
        "leave it unscaled"
    )
