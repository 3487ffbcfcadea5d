"""Input validation shared by the public layer entry points.

Every check raises a plain ``ValueError`` (or ``TypeError`` for dtypes, through
``layers.backend.float_dtype``) whose message names the layer, the argument and the
offending value, so a caller sees what to fix without reading the code. ``assert`` is
never used for user errors.
"""
import numbers

from layers.backend import float_dtype

__all__ = ["float_dtype", "require_ndim", "require_int", "require_grad", "output_size"]


def require_ndim(layer, name, a, ndim, axes):
    """``a.ndim == ndim``, else ``ValueError`` naming the expected axes, e.g. ``(N, C, H, W)``."""
    if a.ndim != ndim:
        raise ValueError(f"{layer}: {name} must be {ndim}-D {axes}, "
                         f"got shape {tuple(a.shape)} ({a.ndim}-D)")


def require_int(layer, name, value, minimum):
    """``value`` is an integer (not a bool) and ``>= minimum``; returns it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{layer}: {name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value}")
    return int(value)


def require_grad(layer, dy, shape, dtype, name="dy"):
    """The upstream gradient ``dy`` has the forward output's ``shape`` and ``dtype``."""
    if tuple(dy.shape) != tuple(shape):
        raise ValueError(f"{layer}: {name} has shape {tuple(dy.shape)} but the forward "
                         f"output had shape {tuple(shape)}")
    got = float_dtype(f"{layer} backward", dy)
    if got != dtype:
        raise TypeError(f"{layer}: {name} has dtype {got} but the forward pass ran in {dtype}")


def output_size(layer, axis, size, kernel, stride, pad):
    """Windows along one axis: ``floor((size + 2*pad - kernel) / stride) + 1`` (rounds down).

    ``ValueError`` when the kernel is larger than the padded input along ``axis``.
    """
    padded = size + 2 * pad
    if kernel > padded:
        raise ValueError(f"{layer}: kernel {axis} {kernel} is larger than the padded input "
                         f"{axis} {padded} (= {size} + 2*{pad})")
    return (padded - kernel) // stride + 1
