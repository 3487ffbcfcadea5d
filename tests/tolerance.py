"""Per-dtype tolerances, in one table, for comparisons against independent references.

float64: references (naive loops, PyTorch in float64) agree to round-off, so 1e-12
relative. float32: a few ulps times the depth of a reduction (an 11x11x3 conv sums 363
products), so 1e-5 relative with an absolute floor for values near zero.
Finite-difference checks always run in float64 and use ``FD``.
"""

import numpy

TOL = {
    numpy.dtype(numpy.float32): dict(rtol=1e-5, atol=1e-6),
    numpy.dtype(numpy.float64): dict(rtol=1e-12, atol=1e-13),
}

# Central differences in float64 with step 1e-6: truncation ~eps^2 = 1e-12 relative, so
# rtol 1e-8 leaves four orders of margin; round-off (~ulp * |f| / eps) is bounded
# separately in tests/gradient_check.py, and atol is only a floor for exact zeros.
FD = dict(eps=1e-6, rtol=1e-8, atol=1e-12)


def tol(dtype):
    return TOL[numpy.dtype(dtype)]
