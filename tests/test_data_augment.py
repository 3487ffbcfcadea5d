"""data.augment against naive per-pixel loops, and the laws of crops, flips and lighting."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refnet.data import augment
from refnet.data import views as crops
from refnet.layers.backend import asnumpy
from tests.tolerance import tol


def naive_view(images, oy, ox, flips, mean, crop, shift=None, scale=None):
    """x[n, c, i, j] by explicit loops in float64 (the reference)."""
    n = images.shape[0]
    out = numpy.zeros((n, 3, crop, crop))
    for k in range(n):
        for c in range(3):
            for i in range(crop):
                for j in range(crop):
                    jj = ox[k] + (crop - 1 - j if flips[k] else j)
                    v = float(images[k, oy[k] + i, jj, c])
                    if mean is not None:
                        v -= mean[oy[k] + i, jj, c]
                    if shift is not None:
                        v += shift[k, c]
                    if scale is not None:
                        v *= scale[c]
                    out[k, c, i, j] = v
    return out


def stored_images(rng, n, s):
    """(images (N, S, S, 3) uint8, mean image (S, S, 3) float64 on the 0-255 scale)."""
    images = rng.integers(0, 256, (n, s, s, 3), dtype=numpy.uint8)
    return images, rng.uniform(0, 255, (s, s, 3))


def random_eig(rng):
    eigvec = numpy.linalg.qr(rng.standard_normal((3, 3)))[0]
    return numpy.array([9000.0, 400.0, 60.0]) * rng.uniform(0.5, 1.5, 3), eigvec


@given(st.data())
def test_views_match_naive_loops(data):
    s = data.draw(st.integers(2, 9), label="S")
    crop = data.draw(st.integers(1, s), label="crop")
    n = data.draw(st.integers(1, 4), label="N")
    dtype = numpy.dtype(data.draw(st.sampled_from(["float32", "float64"])))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = numpy.random.default_rng(seed)
    images, mean = stored_images(rng, n, s)
    eigval, eigvec = random_eig(rng)
    scale = rng.uniform(0.01, 0.05, 3)
    aug = augment.draw(rng, n, s, crop)
    got = augment.train_views(images, aug, mean, eigval, eigvec, crop, scale=scale, dtype=dtype)
    shift = augment.lighting_shift(aug.alphas, eigval, eigvec)
    ref = naive_view(images, aug.offsets_y, aug.offsets_x, aug.flips, mean, crop, shift, scale)
    assert got.dtype == dtype and got.shape == (n, 3, crop, crop)
    # inputs are rounded to dtype once (values up to ~300 levels, times scale)
    atol = 4 * 300 * numpy.finfo(dtype).eps * scale.max()
    numpy.testing.assert_allclose(got, ref, rtol=tol(dtype)["rtol"], atol=atol)
    # the vectorised gather (used on the GPU) is the same function on NumPy
    recipe = augment._Recipe(
        mean.astype(dtype), shift.astype(dtype), scale.astype(dtype), crop, numpy.dtype(dtype)
    )
    args = (images, aug.offsets_y, aug.offsets_x, aug.flips, recipe, numpy)
    numpy.testing.assert_array_equal(augment._windows_by_gather(*args), got)


def test_crops_in_bounds_and_cover_every_offset():
    rng = numpy.random.default_rng(0)
    s, crop = 32, 27
    aug = augment.draw(rng, 5000, s, crop)
    for off in (aug.offsets_y, aug.offsets_x):
        assert off.min() >= 0 and off.max() <= s - crop
        assert set(off.tolist()) == set(range(s - crop + 1))
    assert 0.45 < aug.flips.mean() < 0.55
    assert aug.alphas.shape == (5000, 3)
    assert abs(aug.alphas.std() - 0.1) < 0.005 and abs(aug.alphas.mean()) < 0.005
    assert augment.draw(rng, 3, 27, 27).offsets_y.tolist() == [0, 0, 0]


def test_draw_is_reproducible_from_the_generator_state():
    a = augment.draw(numpy.random.default_rng(7), 16, 32, 27)
    b = augment.draw(numpy.random.default_rng(7), 16, 32, 27)
    for x, y in zip(a, b, strict=True):
        numpy.testing.assert_array_equal(x, y)


def test_flip_is_an_involution():
    rng = numpy.random.default_rng(1)
    n, s, crop = 5, 12, 9
    images, mean = stored_images(rng, n, s)
    oy, ox = rng.integers(0, s - crop + 1, n), rng.integers(0, s - crop + 1, n)
    plain = augment.crop_windows(images, oy, ox, numpy.zeros(n, bool), mean, crop, dtype="float64")
    mirrored = augment.crop_windows(
        images, oy, ox, numpy.ones(n, bool), mean, crop, dtype="float64"
    )
    assert not numpy.array_equal(plain, mirrored)
    numpy.testing.assert_array_equal(mirrored[..., ::-1], plain)  # mirroring twice = plain


def test_lighting_adds_one_rgb_constant_per_image_equal_to_the_formula():
    rng = numpy.random.default_rng(2)
    n, s, crop = 6, 10, 7
    images, mean = stored_images(rng, n, s)
    eigval, eigvec = random_eig(rng)
    aug = augment.draw(rng, n, s, crop)
    lit = augment.train_views(images, aug, mean, eigval, eigvec, crop, dtype="float64")
    dark = augment.train_views(images, aug, mean, None, None, crop, dtype="float64")
    diff = lit - dark  # (N, 3, Cr, Cr)
    const = diff[:, :, :1, :1]
    numpy.testing.assert_allclose(diff, numpy.broadcast_to(const, diff.shape), atol=1e-9)
    expected = numpy.zeros((n, 3))
    for k in range(n):
        for i in range(3):  # sum_i alpha_i * sqrt(lambda_i) * p_i (authors' units)
            expected[k] += aug.alphas[k, i] * numpy.sqrt(eigval[i]) * eigvec[:, i]
    numpy.testing.assert_allclose(const[:, :, 0, 0], expected, rtol=1e-12, atol=1e-9)
    # a sanity bound on the units: shifts of a few levels, not ~1000
    assert numpy.abs(expected).max() < 60


def test_ten_views_are_the_right_windows():
    rng = numpy.random.default_rng(3)
    n, s, crop = 3, 11, 8
    images, mean = stored_images(rng, n, s)
    views = crops.ten_views(images, mean, crop, dtype="float64")
    assert views.shape == (10, n, 3, crop, crop)
    e, c = s - crop, (s - crop) // 2
    corners = [(0, 0), (0, e), (e, 0), (e, e), (c, c)]
    for v in range(10):
        y, x = corners[v % 5]
        ref = images[:, y : y + crop, x : x + crop] - mean[y : y + crop, x : x + crop]
        ref = ref.transpose(0, 3, 1, 2)  # (N, 3, Cr, Cr)
        if v >= 5:
            ref = ref[..., ::-1]
        numpy.testing.assert_allclose(views[v], ref, rtol=0, atol=1e-12)
        # the whole-batch slice used on the GPU for shared windows
        recipe = augment._Recipe(mean, None, None, crop, numpy.dtype("float64"))
        same = augment._same_window(images, y, x, v >= 5, recipe, numpy)
        numpy.testing.assert_array_equal(same, views[v])
    center = crops.center_view(images, mean, crop, dtype="float64")
    numpy.testing.assert_array_equal(center, views[4])


def test_views_agree_across_array_modules(xp):
    if xp is numpy:  # the same call twice; NumPy's paths are compared with each other above
        pytest.skip("compares CuPy with NumPy")
    rng = numpy.random.default_rng(4)
    n, s, crop = 4, 16, 13
    images, mean = stored_images(rng, n, s)
    eigval, eigvec = random_eig(rng)
    aug = augment.draw(rng, n, s, crop)
    ref = augment.train_views(images, aug, mean, eigval, eigvec, crop, scale=0.02, dtype="float64")
    got = augment.train_views(
        xp.asarray(images), aug, xp.asarray(mean), eigval, eigvec, crop, scale=0.02, dtype="float64"
    )
    numpy.testing.assert_allclose(asnumpy(got), ref, rtol=1e-12, atol=1e-9)
    ten = crops.ten_views(xp.asarray(images), xp.asarray(mean), crop, dtype="float64")
    numpy.testing.assert_allclose(
        asnumpy(ten), crops.ten_views(images, mean, crop, dtype="float64"), rtol=1e-12, atol=1e-9
    )


def test_bad_arguments_raise_plain_errors():
    rng = numpy.random.default_rng(5)
    images = rng.integers(0, 256, (2, 8, 8, 3), dtype=numpy.uint8)
    with pytest.raises(ValueError, match="crop"):
        augment.draw(rng, 2, 8, 9)
    with pytest.raises(TypeError, match="Generator"):
        augment.draw(numpy.random.RandomState(0), 2, 8, 4)
    with pytest.raises(TypeError, match="uint8"):
        crops.center_view(images.astype(numpy.float32), None, 4)
    with pytest.raises(ValueError, match="mean_image"):
        crops.center_view(images, numpy.zeros((7, 7, 3)), 4)
    with pytest.raises(ValueError, match="offsets"):
        augment.crop_windows(images, [0, 5], [0, 0], [False, False], None, 4)
    with pytest.raises(ValueError, match="scale"):
        crops.center_view(images, None, 4, scale=[1.0, 2.0])
