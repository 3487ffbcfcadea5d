"""The evaluation views: the centre crop and the paper's 10 crops, through ``data.augment``.

Axis legend: N batch, S stored side, Cr crop side, 3 RGB channels, V views (10).

    center_view(images, mean_image, crop, *, scale=None, dtype="float32") -> (N, 3, Cr, Cr)
    ten_views(images, mean_image, crop, *, scale=None, dtype="float32") -> (10, N, 3, Cr, Cr)
        view order: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, 4 centre,
        then 5..9 the horizontal mirrors of 0..4 in the same order.

Each view is ``data.augment.crop_windows`` with the same window for every image (formula
in ``data.augment``'s docstring), mean-subtracted, no lighting; on a GPU that is one
whole-batch slice.
"""

from __future__ import annotations

import numpy
from numpy.typing import ArrayLike, DTypeLike

from refnet.data.augment import _check_crop, _check_images, crop_windows
from refnet.layers.backend import Array, as_dtype, get_array_module


def center_view(
    images: Array,
    mean_image: Array | None,
    crop: int,
    *,
    scale: ArrayLike | None = None,
    dtype: DTypeLike = "float32",
) -> Array:
    """The centre crop at ((S - Cr) // 2, (S - Cr) // 2), mean-subtracted: (N, 3, Cr, Cr)."""
    n = _check_images("center_view", images, mean_image, crop)
    o = (images.shape[1] - crop) // 2
    return crop_windows(
        images,
        numpy.full(n, o),
        numpy.full(n, o),
        numpy.zeros(n, bool),
        mean_image,
        crop,
        scale=scale,
        dtype=dtype,
    )


def ten_views(
    images: Array,
    mean_image: Array | None,
    crop: int,
    *,
    scale: ArrayLike | None = None,
    dtype: DTypeLike = "float32",
) -> Array:
    """The 10 evaluation crops (order in the module doc): (10, N, 3, Cr, Cr) on xp."""
    n = _check_images("ten_views", images, mean_image, crop)
    xp = get_array_module(images)
    out = xp.empty((10, n, 3, crop, crop), dtype=as_dtype(dtype))
    for v, (oy, ox, flip) in enumerate(ten_crop_offsets(images.shape[1], crop)):
        crop_windows(
            images,
            numpy.full(n, oy),
            numpy.full(n, ox),
            numpy.full(n, flip),
            mean_image,
            crop,
            scale=scale,
            dtype=dtype,
            out=out[v],
        )
    return out


def ten_crop_offsets(stored_size: int, crop: int) -> list[tuple[int, int, bool]]:
    """[(offset_y, offset_x, flip)] of the 10 views, in ``ten_views`` order."""
    _check_crop("ten_crop_offsets", stored_size, crop)
    e, c = stored_size - crop, (stored_size - crop) // 2
    base = [(0, 0), (0, e), (e, 0), (e, e), (c, c)]
    return [(y, x, False) for y, x in base] + [(y, x, True) for y, x in base]
