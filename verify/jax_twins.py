"""JAX twins of refnet's layers: each layer's forward written here from its formula in
``jax.numpy`` / ``jax.lax``, and its backward taken by JAX's autodiff (``jax.vjp``).

The functions take and return NumPy arrays with the same names and keys as
``verify.twins`` (PyTorch's), so ``verify.layer_cases`` runs either: ``y``, ``dx``, ``dw``,
``db``; ``loss`` and ``dlogits`` for the softmax. Importing this module turns on JAX's
64-bit mode (``jax_enable_x64``) for the process: without it JAX silently computes
float64 inputs in float32. float32 inputs stay float32.

Axis legend: N batch, C input channels, K output channels (kernels), G groups,
H/W input height/width, Ho/Wo output height/width, D features of a linear layer.

Formulas (the paper's; where JAX's own operators would differ, the code says so):

- conv: y[n, k] = b[k] + sum_{c in group(k), i, j} w[k, c, i, j] x[n, c, s*h + i - p, s*w + j - p]
  (cross-correlation), ``lax.conv_general_dilated`` with ``feature_group_count=G``.
- relu: y = x if x > 0 else 0, written as ``where(x > 0, x, 0)`` so that the gradient at
  exactly 0 is 0 as in refnet; ``jnp.maximum(x, 0)`` would split it, 0.5 to each side.
- lrn: b_c = a_c / (k + alpha * sum_{|c' - c| <= n // 2} a_c'^2)^beta, alpha NOT divided
  by n, the window clipped at the edges of the channels (of each column's channels when
  ``groups`` > 1): a banded 0/1 matrix over channels times a^2.
- max pooling: ``lax.reduce_window`` with ``lax.max``, no padding (floor rounding), or
  for Caffe's ceil rounding -inf past the edge for the clipped last window. Its
  derivative gives a tied window's gradient to the first maximum in row-major order, as
  refnet does (measured here on integer inputs with hundreds of ties).
- dropout with a given keep-mask m: paper y = x m (train), x (1 - p) (test);
  inverted y = x m / (1 - p) (train), x (test).
- linear: y = x w^T + b. Global average pooling: y[n, c] = mean_{h, w} x[n, c, h, w].
- softmax cross-entropy, mean over the batch:
  loss = (1/N) sum_n (log sum_j exp z[n, j] - z[n, label_n]), the log-sum-exp shifted by
  its row maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy
from jax import lax
from jax import numpy as jnp
from numpy.typing import ArrayLike, DTypeLike

from refnet.options import CHOICES

jax.config.update("jax_enable_x64", True)  # float64 stays float64 (module doc)


def host(a: Any) -> numpy.ndarray:
    """A NumPy copy of a JAX array."""
    return numpy.array(a)


def compiled_vjp(
    forward: Callable[..., Any], static: Sequence[str] = ()
) -> Callable[..., tuple[numpy.ndarray, list[numpy.ndarray]]]:
    """``run(inputs, dy, **hyper) -> (y, [d<y, dy>/d input for each input])``, NumPy in
    and out: ``jax.vjp`` of ``forward(*inputs, **hyper)`` compiled as one program per
    shape and value of the ``static`` hyperparameters (the others are traced, so the
    cases that differ only in them share one compilation)."""

    def program(inputs: Sequence[Any], dy: Any, **hyper: Any) -> tuple[Any, Any]:
        y, pullback = jax.vjp(lambda *a: forward(*a, **hyper), *inputs)
        return y, pullback(dy)

    compiled = jax.jit(program, static_argnames=static)

    def run(
        inputs: Sequence[ArrayLike], dy: ArrayLike, **hyper: Any
    ) -> tuple[numpy.ndarray, list[numpy.ndarray]]:
        y, grads = compiled([jnp.asarray(a) for a in inputs], jnp.asarray(dy), **hyper)
        return host(y), [host(g) for g in grads]

    return run


# -- forwards, on JAX arrays -----------------------------------------------------------


def conv_forward(x: Any, w: Any, b: Any, *, stride: int = 1, pad: int = 0, groups: int = 1) -> Any:
    """x (N, C, H, W), w (K, C/G, kh, kw), b (K,) -> y (N, K, Ho, Wo)."""
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        feature_group_count=groups,
        precision=lax.Precision.HIGHEST,
    )
    return y + b[None, :, None, None]  # (N, K, Ho, Wo)


def relu_forward(x: Any) -> Any:
    """max(x, 0) with the gradient 0 at x = 0 (module doc)."""
    return jnp.where(x > 0, x, jnp.zeros_like(x))


def lrn_band(channels: int, size: int, groups: int, dtype: DTypeLike) -> Any:
    """(C, C) 0/1 matrix: 1 where |c - c'| <= size // 2 and c, c' lie in the same group."""
    c = numpy.arange(channels)
    near = numpy.abs(c[:, None] - c[None, :]) <= size // 2
    column = channels // groups
    same = (c[:, None] // column) == (c[None, :] // column)
    return jnp.asarray((near & same).astype(dtype))


def lrn_forward(a: Any, *, size: int, alpha: float, beta: float, k: float, groups: int = 1) -> Any:
    """The paper's LRN over channels: a (N, C, H, W) -> b (N, C, H, W)."""
    band = lrn_band(a.shape[1], size, groups, a.dtype)  # (C, C)
    window = jnp.einsum(
        "dc,nchw->ndhw", band, a * a, precision=lax.Precision.HIGHEST
    )  # (N, C, H, W)
    return a / (k + alpha * window) ** beta


def pool_size(h: int, size: int, stride: int, rounding: str) -> int:
    """Pooled side: floor((h - z) / s) + 1, or for "ceil" ceil((h - z) / s) + 1 less a
    last window that would start at or past h."""
    if rounding == "floor":
        return (h - size) // stride + 1
    out = -(-(h - size) // stride) + 1
    return out - 1 if (out - 1) * stride >= h else out


def pool_forward(x: Any, *, size: int, stride: int, rounding: str = "floor") -> Any:
    """Max over size x size windows at ``stride``: (N, C, H, W) -> (N, C, Ho, Wo); a window
    clipped at the edge ("ceil") sees -inf where it leaves x."""
    H, W = x.shape[2:]
    extra = [(pool_size(n, size, stride, rounding) - 1) * stride + size - n for n in (H, W)]
    return lax.reduce_window(
        x,
        -jnp.inf,
        lax.max,
        (1, 1, size, size),
        (1, 1, stride, stride),
        ((0, 0), (0, 0), (0, max(extra[0], 0)), (0, max(extra[1], 0))),
    )


def dropout_forward(x: Any, mask: Any, *, p: float, train: Any, mode: str) -> Any:
    """Dropout with the keep-mask ``mask`` (1 keep, 0 drop), scaled by ``mode``;
    ``train`` may be a traced boolean (both forms are computed, one is selected)."""
    if mode not in CHOICES["dropout_mode"]:
        raise ValueError(
            f"dropout (jax): mode must be one of {CHOICES['dropout_mode']}, got {mode!r}"
        )
    if mode == "paper":
        return jnp.where(train, x * mask, x * (1.0 - p))
    return jnp.where(train, x * mask / (1.0 - p), x)


def linear_forward(x: Any, w: Any, b: Any) -> Any:
    """x (N, Din), w (Dout, Din), b (Dout,) -> x w^T + b (N, Dout)."""
    return jnp.matmul(x, w.T, precision=lax.Precision.HIGHEST) + b


def gap_forward(x: Any) -> Any:
    """(N, C, H, W) -> (N, C), the mean over (H, W)."""
    return jnp.mean(x, axis=(2, 3))


def cross_entropy(z: Any, labels: Any) -> Any:
    """Mean over the batch of -log softmax(z)[label]: z (N, M), labels (N,) int."""
    top = jnp.max(z, axis=1, keepdims=True)  # (N, 1), for stability
    lse = top[:, 0] + jnp.log(jnp.sum(jnp.exp(z - top), axis=1))  # (N,)
    picked = jnp.take_along_axis(z, labels[:, None], axis=1)[:, 0]  # (N,)
    return jnp.mean(lse - picked)


# -- twins with verify.twins' interface, on NumPy arrays ----------------------------------

_conv = compiled_vjp(conv_forward, static=("stride", "pad", "groups"))
_relu = compiled_vjp(relu_forward)
_lrn = compiled_vjp(lrn_forward, static=("size", "groups"))
_pool = compiled_vjp(pool_forward, static=("size", "stride", "rounding"))
_gap = compiled_vjp(gap_forward)
_dropout = compiled_vjp(dropout_forward, static=("mode",))
_linear = compiled_vjp(linear_forward)
_cross_entropy = compiled_vjp(cross_entropy)


def conv(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike,
    dy: ArrayLike,
    *,
    stride: int = 1,
    pad: int = 0,
    groups: int = 1,
) -> dict[str, numpy.ndarray]:
    y, (dx, dw, db) = _conv((x, w, b), dy, stride=stride, pad=pad, groups=groups)
    return {"y": y, "dx": dx, "dw": dw, "db": db}


def relu(x: ArrayLike, dy: ArrayLike) -> dict[str, numpy.ndarray]:
    y, (dx,) = _relu((x,), dy)
    return {"y": y, "dx": dx}


def lrn(
    x: ArrayLike,
    dy: ArrayLike,
    *,
    size: int = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 2.0,
    groups: int = 1,
) -> dict[str, numpy.ndarray]:
    y, (dx,) = _lrn((x,), dy, size=size, alpha=alpha, beta=beta, k=k, groups=groups)
    return {"y": y, "dx": dx}


def pool(
    x: ArrayLike, dy: ArrayLike, *, size: int = 3, stride: int = 2, ceil_mode: bool = False
) -> dict[str, numpy.ndarray]:
    y, (dx,) = _pool((x,), dy, size=size, stride=stride, rounding="ceil" if ceil_mode else "floor")
    return {"y": y, "dx": dx}


def gap(x: ArrayLike, dy: ArrayLike) -> dict[str, numpy.ndarray]:
    y, (dx,) = _gap((x,), dy)
    return {"y": y, "dx": dx}


def dropout(
    x: numpy.ndarray,
    dy: ArrayLike,
    *,
    p: float = 0.5,
    train: bool = True,
    mask: ArrayLike | None = None,
    mode: str = "paper",
) -> dict[str, numpy.ndarray]:
    mask = numpy.ones_like(x) if mask is None else numpy.asarray(mask, dtype=x.dtype)
    y, (dx, _) = _dropout((x, mask), dy, p=p, train=train, mode=mode)
    return {"y": y, "dx": dx}


def linear(x: ArrayLike, w: ArrayLike, b: ArrayLike, dy: ArrayLike) -> dict[str, numpy.ndarray]:
    y, (dx, dw, db) = _linear((x, w, b), dy)
    return {"y": y, "dx": dx, "dw": dw, "db": db}


def softmax_cross_entropy(
    logits: numpy.ndarray, labels: ArrayLike, dloss: float
) -> dict[str, numpy.ndarray]:
    labels = numpy.asarray(labels, dtype=numpy.int64)
    loss, (dz, _) = _cross_entropy((logits, labels), numpy.asarray(dloss, logits.dtype))
    return {"loss": loss, "dlogits": dz}
