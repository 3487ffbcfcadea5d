"""Directional finite-difference checks of backward passes, shared by the layer tests.

For a layer y = f(x1, x2, ...), a random upstream gradient dy and a random direction v
for one input xi, the chain rule says

    <dy, (f(.., xi + eps v, ..) - f(.., xi - eps v, ..)) / (2 eps)>  ==  <dxi, v>

up to O(eps^2) truncation and round-off. Everything runs in float64 with ``FD`` from
``tests/tolerance.py``; the tolerance is relative to ||dxi|| * ||v|| (the Cauchy-Schwarz
bound on <dxi, v>), so a cancellation in the dot product cannot hide an error.
"""

import numpy
from hypothesis import HealthCheck, settings

from refnet.layers import backend
from tests.tolerance import FD

# Hypothesis with the parametrised ``xp``/``dtype`` fixtures (they hold no state per example).
fixture_settings = settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ]
)


# ulps of round-off per output element allowed for (the deepest reductions here sum ~1e3
# products; their error is a few ulps of the output's size on average, not the worst case)
ROUNDOFF_ULPS = 64


def directional_error(f, args, grads, dy, rng, which=None):
    """[(index, fd, analytic, bound), ...] for each input index in ``which`` (default all).

    ``f(*args)`` returns the layer output; ``args`` and ``grads`` are xp float64 arrays,
    ``dy`` the upstream gradient used to compute ``grads``.
    """
    xp = backend.get_array_module(*args)
    eps = FD["eps"]
    dyh = backend.asnumpy(dy)
    out = []
    for i in range(len(args)) if which is None else which:
        v = rng.standard_normal(args[i].shape)
        vx = xp.asarray(v)
        plus = list(args)
        minus = list(args)
        plus[i] = args[i] + eps * vx
        minus[i] = args[i] - eps * vx
        fp, fm = backend.asnumpy(f(*plus)), backend.asnumpy(f(*minus))
        df = (fp - fm) / (2 * eps)
        fd = float(numpy.sum(dyh * df))
        g = backend.asnumpy(grads[i])
        analytic = float(numpy.sum(g * v))
        # Round-off of the difference quotient: each output carries ~ulp-sized errors from
        # its own reduction, divided by 2 eps and summed against dy (Cauchy-Schwarz).
        roundoff = (
            ROUNDOFF_ULPS
            * numpy.finfo(numpy.float64).eps
            / (2 * eps)
            * (numpy.linalg.norm(dyh) * max(numpy.linalg.norm(fp), numpy.linalg.norm(fm)))
        )
        bound = (
            FD["atol"]
            + roundoff
            + FD["rtol"] * (numpy.linalg.norm(g) * numpy.linalg.norm(v) + abs(fd))
        )
        out.append((i, fd, analytic, bound))
    return out


def assert_directional(f, args, grads, dy, rng, which=None):
    """Fail with the offending input index when an analytic gradient disagrees with FD."""
    for i, fd, analytic, bound in directional_error(f, args, grads, dy, rng, which):
        assert abs(fd - analytic) <= bound, (
            f"input {i}: finite difference {fd!r} vs backward {analytic!r} "
            f"(|diff| {abs(fd - analytic):.3e} > {bound:.3e})"
        )
