"""The crossings between columns as layers: values, adjointness, and device discipline.

Each crossing is linear, so its backward must be its adjoint: for random x and dy,
<forward(x), dy> == <x, backward(dy)> summed over the columns. The columns sit on
devices 0 and 1 of the device-tagging backend, so a missing transfer fails here.
"""

import numpy
import pytest

from refnet import exchange
from refnet.columns import Placement
from tests.device_backend import tagged


def placement(columns=2):
    return Placement(tagged, columns, (0, 1)[:columns], {}, parallel=False)


def on(device, a):
    with tagged.Device(device):
        return tagged.asarray(a)


def host(parts):
    return [numpy.asarray(p) for p in parts]


def dot(a, b):
    return sum(
        float(numpy.vdot(numpy.asarray(x), numpy.asarray(y))) for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("axis, to", [(0, None), (1, None), (1, (0,))])
def test_exchange_concatenates_and_its_backward_is_the_adjoint(axis, to):
    rng = numpy.random.default_rng(0)
    P = placement()
    shapes = [(3, 4, 2), (5, 4, 2)] if axis == 0 else [(2, 3, 4), (2, 5, 4)]
    xs = [rng.standard_normal(s) for s in shapes]
    parts = [on(c, x) for c, x in enumerate(xs)]
    y, cache = exchange.forward(parts, place=P, axis=axis, to=to)
    targets = (0, 1) if to is None else to
    assert [a.device_id for a in y] == list(targets)
    for a in y:
        numpy.testing.assert_array_equal(numpy.asarray(a), numpy.concatenate(xs, axis=axis))
    dys = [on(d, rng.standard_normal(a.shape)) for d, a in zip(targets, y, strict=True)]
    dx = exchange.backward(dys, cache, place=P)
    assert [g.device_id for g in dx] == [0, 1]
    assert [g.shape for g in dx] == [x.shape for x in xs]
    assert dot(y, dys) == pytest.approx(dot(parts, dx), rel=1e-12)


def test_one_column_exchanges_nothing():
    P = placement(1)
    x = [on(0, numpy.arange(6.0).reshape(2, 3))]
    y, cache = exchange.forward(x, place=P, axis=1)
    assert y[0] is x[0]
    assert exchange.backward(y, cache, place=P)[0] is y[0]


@pytest.mark.parametrize("axis", [0, 1])
def test_halo_and_trim_are_adjoint_and_give_the_neighbours_channels(axis):
    rng = numpy.random.default_rng(1)
    P, n = placement(), 2
    shape = [(4, 3, 2), (5, 3, 2)] if axis == 0 else [(2, 4, 3), (2, 5, 3)]
    xs = [rng.standard_normal(s) for s in shape]
    parts = [on(c, x) for c, x in enumerate(xs)]
    ext, cache = exchange.halo_forward(parts, place=P, n=n, axis=axis)
    whole = numpy.concatenate(xs, axis=axis)
    c0 = xs[0].shape[axis]
    want0 = numpy.take(whole, range(0, c0 + n), axis=axis)
    want1 = numpy.take(whole, range(c0 - n, whole.shape[axis]), axis=axis)
    numpy.testing.assert_array_equal(numpy.asarray(ext[0]), want0)
    numpy.testing.assert_array_equal(numpy.asarray(ext[1]), want1)
    dext = [on(c, rng.standard_normal(e.shape)) for c, e in enumerate(ext)]
    assert dot(ext, dext) == pytest.approx(
        dot(parts, exchange.halo_backward(dext, cache, place=P)), rel=1e-12
    )

    own = exchange.trim_forward(ext, cache)
    for o, x in zip(own, xs, strict=True):
        numpy.testing.assert_array_equal(numpy.asarray(o), x)
    dy = [on(c, rng.standard_normal(x.shape)) for c, x in enumerate(xs)]
    assert dot(own, dy) == pytest.approx(
        dot(ext, exchange.trim_backward(dy, cache, place=P)), rel=1e-12
    )


def test_a_halo_of_zero_channels_is_the_identity():
    P = placement()
    parts = [on(c, numpy.ones((2, 3))) for c in range(2)]
    ext, cache = exchange.halo_forward(parts, place=P, n=0, axis=1)
    assert all(e is p for e, p in zip(ext, parts, strict=True))
    assert all(a is b for a, b in zip(exchange.trim_forward(ext, cache), parts, strict=True))
