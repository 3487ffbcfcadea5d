"""The finite-difference checker itself can fail: a wrong gradient is caught."""

import numpy
import pytest

from tests.gradient_check import assert_directional


def test_checker_accepts_right_and_rejects_wrong_gradient():
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((4, 5))
    dy = rng.standard_normal((4, 5))
    f = numpy.sin
    assert_directional(f, [x], [dy * numpy.cos(x)], dy, rng)
    wrong = dy * numpy.cos(x)
    wrong[1, 2] *= 1.001  # one entry off by 0.1%
    with pytest.raises(AssertionError, match="input 0"):
        assert_directional(f, [x], [wrong], dy, numpy.random.default_rng(1))
