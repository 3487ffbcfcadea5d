"""The paper's augmentation, written once for any array module (NumPy or CuPy).

Axis legend: N batch, S stored side, Cr crop side, 3 RGB channels (last in storage,
second in the network's NCHW input). The evaluation views are in ``data.views``.

Randomness lives on the host (``draw``: NumPy arrays), applied on the images' own array
module, so CPU and GPU runs see bit-identical draws.

    aug = draw(rng, n, stored_size, crop, lighting_std=0.1)
        draws, in this order: offsets_y (n,) int64 in [0, S - Cr], offsets_x (n,),
        flips (n,) bool (p = 0.5), alphas (n, 3) float64 ~ N(0, lighting_std)
    train_views(images, aug, mean_image, eigval, eigvec, crop, *, scale=None, dtype="float32")
        -> (N, 3, Cr, Cr) on images' xp
    lighting_shift(alphas, eigval, eigvec) -> (N, 3) float64, the RGB constant per image

Every view is, per image n (all in ``dtype``, on the 0-255 scale):

    x[n] = (I[n][window] - M[window] + shift[n]) * scale        then mirrored if flips[n]

where ``images`` I are (N, S, S, 3) uint8, ``window`` is rows oy..oy+Cr-1 and columns
ox..ox+Cr-1, M is the (S, S, 3) mean image (its window at the same place, mirrored with
the image), and ``scale`` is None, a scalar or a per-channel (3,) factor (e.g. 1 /
pixel_std). PCA lighting: shift[n] = eigvec @ (alphas[n] * sqrt(eigval)), ``eigval`` the
variances of the RGB covariance on the 0-255 scale and ``eigvec[:, i]`` their unit
eigenvectors; sqrt(eigval) is the authors' unit, not the paper's literal alpha_i *
lambda_i (docs/paper.md, "Data", says why).

NumPy copies one window per image; other array modules gather (docs/performance.md).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy
from numpy.typing import ArrayLike, DTypeLike

from refnet.layers.backend import Array, Module, as_dtype, get_array_module

Host = numpy.ndarray  # offsets and flips: host arrays whatever the images' module


class Augmentation(NamedTuple):
    """Host-side random parameters of one batch (all NumPy arrays)."""

    offsets_y: numpy.ndarray  # (N,) int64, top row of the crop
    offsets_x: numpy.ndarray  # (N,) int64, left column of the crop
    flips: numpy.ndarray  # (N,) bool, mirror horizontally
    alphas: numpy.ndarray  # (N, 3) float64, lighting coefficients


class _Recipe(NamedTuple):  # what every window gets after its copy, on the images' xp
    mean: Array | None  # (S, S, 3) mean image in ``dt``
    shift: Array | None  # (N, 3) lighting shift in ``dt``
    scale: Array | None  # (3,) factor in ``dt``
    crop: int
    dt: numpy.dtype


def draw(
    rng: numpy.random.Generator, n: int, stored_size: int, crop: int, *, lighting_std: float = 0.1
) -> Augmentation:
    """Draw the augmentation of ``n`` images from ``rng`` (order in the module doc)."""
    if not isinstance(rng, numpy.random.Generator):
        raise TypeError(f"draw: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    _check_crop("draw", stored_size, crop)
    if n < 0 or lighting_std < 0:
        raise ValueError(f"draw: need n >= 0 and lighting_std >= 0, got {n}, {lighting_std}")
    oy = rng.integers(0, stored_size - crop + 1, size=n, dtype=numpy.int64)
    ox = rng.integers(0, stored_size - crop + 1, size=n, dtype=numpy.int64)
    flips = rng.random(n) < 0.5
    alphas = rng.standard_normal((n, 3)) * lighting_std
    return Augmentation(oy, ox, flips, alphas)


def lighting_shift(alphas: ArrayLike, eigval: ArrayLike, eigvec: ArrayLike) -> numpy.ndarray:
    """(N, 3) float64 RGB shift per image: eigvec @ (alphas[n] * sqrt(eigval)) (module doc)."""
    alphas = numpy.asarray(alphas, dtype=numpy.float64)
    eigval = numpy.asarray(eigval, dtype=numpy.float64)
    eigvec = numpy.asarray(eigvec, dtype=numpy.float64)
    if alphas.ndim != 2 or alphas.shape[1] != 3 or eigval.shape != (3,) or eigvec.shape != (3, 3):
        raise ValueError(
            f"lighting_shift: expected alphas (N, 3), eigval (3,), eigvec (3, 3); "
            f"got {alphas.shape}, {eigval.shape}, {eigvec.shape}"
        )
    if (eigval < 0).any():
        raise ValueError(f"lighting_shift: eigenvalues must be >= 0, got {eigval}")
    return (alphas * numpy.sqrt(eigval)) @ eigvec.T  # (N, 3)


def train_views(
    images: Array,
    aug: Augmentation,
    mean_image: Array | None,
    eigval: ArrayLike | None,
    eigvec: ArrayLike | None,
    crop: int,
    *,
    scale: ArrayLike | None = None,
    dtype: DTypeLike = "float32",
) -> Array:
    """Random crops, flips, mean subtraction and PCA lighting: (N, 3, Cr, Cr) on xp.
    ``eigval``/``eigvec`` None: no lighting. ``mean_image`` None: no mean subtraction."""
    n = _check_images("train_views", images, mean_image, crop)
    if len(aug.offsets_y) != n:
        raise ValueError(f"train_views: {n} images but an augmentation of {len(aug.offsets_y)}")
    shift = None
    if eigval is not None or eigvec is not None:
        if eigval is None or eigvec is None:
            raise ValueError("train_views: give both eigval and eigvec, or neither")
        shift = lighting_shift(aug.alphas, eigval, eigvec)
    return crop_windows(
        images,
        aug.offsets_y,
        aug.offsets_x,
        aug.flips,
        mean_image,
        crop,
        shift=shift,
        scale=scale,
        dtype=dtype,
    )


def crop_windows(
    images: Array,
    offsets_y: ArrayLike,
    offsets_x: ArrayLike,
    flips: ArrayLike,
    mean_image: Array | None,
    crop: int,
    *,
    shift: ArrayLike | None = None,
    scale: ArrayLike | None = None,
    dtype: DTypeLike = "float32",
    out: Array | None = None,
) -> Array:
    """The general view (module doc's formula); offsets, flips and shift are host arrays.
    images (N, S, S, 3) uint8 on xp -> (N, 3, Cr, Cr) ``dtype`` on xp (into ``out`` if given)."""
    n = _check_images("crop_windows", images, mean_image, crop)
    dt = as_dtype(dtype)
    xp = get_array_module(images)
    oy, ox = numpy.asarray(offsets_y, numpy.int64), numpy.asarray(offsets_x, numpy.int64)
    flips = numpy.asarray(flips, bool)
    s = images.shape[1]
    for name, a in (("offsets_y", oy), ("offsets_x", ox), ("flips", flips)):
        if a.shape != (n,):
            raise ValueError(f"crop_windows: {name} has shape {a.shape}, expected ({n},)")
    if n and (oy.min() < 0 or ox.min() < 0 or oy.max() > s - crop or ox.max() > s - crop):
        raise ValueError(f"crop_windows: offsets outside [0, {s - crop}] for crop {crop} of {s}")
    if out is not None and (tuple(out.shape) != (n, 3, crop, crop) or out.dtype != dt):
        raise ValueError(
            f"crop_windows: out must be ({n}, 3, {crop}, {crop}) {dt}, "
            f"got {tuple(out.shape)} {out.dtype}"
        )
    mean = None if mean_image is None else xp.asarray(mean_image).astype(dt, copy=False)
    shift_x = (
        None
        if shift is None
        else xp.asarray(numpy.asarray(shift, numpy.float64).reshape(n, 3).astype(dt))
    )
    scale_x = None if scale is None else _scale_array(scale, dt, xp)
    r = _Recipe(mean, shift_x, scale_x, crop, dt)
    if xp is numpy:
        return _windows_by_loop(images, oy, ox, flips, r, out)
    if n and (oy == oy[0]).all() and (ox == ox[0]).all() and (flips == flips[0]).all():
        x = _same_window(images, int(oy[0]), int(ox[0]), bool(flips[0]), r, xp)
    else:
        x = _windows_by_gather(images, oy, ox, flips, r, xp)
    if out is None:
        return x
    out[...] = x
    return out


def _same_window(images: Array, oy: int, ox: int, flip: bool, r: _Recipe, xp: Module):
    crop, dt, mean, shift, scale = r.crop, r.dt, r.mean, r.shift, r.scale
    cols = slice(ox + crop - 1, ox - 1 if ox > 0 else None, -1) if flip else slice(ox, ox + crop)
    x = images[:, oy : oy + crop, cols].astype(dt)  # (N, Cr, Cr, 3)
    if mean is not None:
        x -= mean[oy : oy + crop, cols]
    if shift is not None:
        x += shift[:, None, None, :]  # (N, 1, 1, 3)
    if scale is not None:
        x *= scale
    return xp.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, 3, Cr, Cr)


def _windows_by_loop(
    images: Host, oy: Host, ox: Host, flips: Host, r: _Recipe, out: Host | None = None
):
    crop, dt, mean, shift, scale = r.crop, r.dt, r.mean, r.shift, r.scale
    n = images.shape[0]
    if out is None:
        out = numpy.empty((n, 3, crop, crop), dtype=dt)
    for i in range(n):
        y0, x0 = oy[i], ox[i]
        p = images[i, y0 : y0 + crop, x0 : x0 + crop]  # (Cr, Cr, 3)
        m = None if mean is None else mean[y0 : y0 + crop, x0 : x0 + crop]
        if flips[i]:
            p = p[:, ::-1]
            m = None if m is None else m[:, ::-1]
        o = out[i]  # (3, Cr, Cr) view
        o[...] = p.transpose(2, 0, 1)  # (3, Cr, Cr)
        if m is not None:
            o -= m.transpose(2, 0, 1)  # (3, Cr, Cr)
        if shift is not None:
            o += shift[i][:, None, None]  # (3, 1, 1)
        if scale is not None:
            o *= scale[:, None, None]  # (3, 1, 1)
    return out


def _windows_by_gather(images: Array, oy: Host, ox: Host, flips: Host, r: _Recipe, xp: Module):
    crop, dt, mean, shift, scale = r.crop, r.dt, r.mean, r.shift, r.scale
    n = images.shape[0]
    ar = numpy.arange(crop)
    rows = oy[:, None] + ar  # (N, Cr)
    cols = numpy.where(flips[:, None], ox[:, None] + crop - 1 - ar, ox[:, None] + ar)  # (N, Cr)
    rows, cols = xp.asarray(rows), xp.asarray(cols)
    batch = xp.arange(n)[:, None, None]  # (N, 1, 1)
    x = images[batch, rows[:, :, None], cols[:, None, :]].astype(dt)  # (N, Cr, Cr, 3)
    if mean is not None:
        x -= mean[rows[:, :, None], cols[:, None, :]]  # (N, Cr, Cr, 3)
    if shift is not None:
        x += shift[:, None, None, :]  # (N, 1, 1, 3)
    if scale is not None:
        x *= scale
    return xp.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, 3, Cr, Cr)


def _scale_array(scale: ArrayLike, dt: numpy.dtype, xp: Module):
    a = numpy.asarray(scale, dtype=numpy.float64)
    if a.shape == ():
        a = numpy.full(3, float(a))
    if a.shape != (3,):
        raise ValueError(f"scale must be a scalar or per-channel (3,), got shape {a.shape}")
    return xp.asarray(a.astype(dt))


def _check_crop(name: str, stored_size: int, crop: int):
    if not 1 <= crop <= stored_size:
        raise ValueError(f"{name}: crop must be in [1, {stored_size}], got {crop}")


def _check_images(name: str, images: Array, mean_image: Array | None, crop: int):
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"{name}: images must be (N, S, S, 3), got {tuple(images.shape)}")
    if images.dtype != numpy.uint8:
        raise TypeError(f"{name}: images must be uint8, got {images.dtype}")
    s = images.shape[1]
    _check_crop(name, s, crop)
    if mean_image is not None and tuple(mean_image.shape) != (s, s, 3):
        raise ValueError(f"{name}: mean_image must be ({s}, {s}, 3), got {tuple(mean_image.shape)}")
    return images.shape[0]
