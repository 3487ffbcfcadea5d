"""Softmax and the mean cross-entropy loss over a batch.

Axis legend: N batch, M classes. logits (N, M), labels (N,) integers in [0, M).
"""

from __future__ import annotations

from typing import NamedTuple

from refnet.layers.backend import Array, get_array_module
from refnet.layers.checks import float_dtype, require_ndim

__all__ = ["forward", "backward", "probabilities", "SoftmaxCache"]


class SoftmaxCache(NamedTuple):
    probs: Array  # (N, M) softmax of the logits
    labels: Array  # (N,) integer labels on the logits' array module


def _shifted_exp(logits: Array) -> tuple[Array, Array]:
    """(exp(z - max_m z), z - max_m z), row by row: never overflows."""
    xp = get_array_module(logits)
    z = logits - logits.max(axis=1, keepdims=True)  # (N, M), max entry 0
    return xp.exp(z), z


def probabilities(logits: Array) -> Array:
    """p[n, m] = exp(z[n, m]) / sum_m' exp(z[n, m']), computed after subtracting the row max."""
    float_dtype("softmax", logits)
    require_ndim("softmax", "logits", logits, 2, "(N, M)")
    e, _ = _shifted_exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def forward(logits: Array, labels: Array) -> tuple[Array, SoftmaxCache]:
    """loss = (1/N) sum_n [log sum_m exp(z[n, m]) - z[n, labels[n]]]

    The mean over the batch (PyTorch's ``cross_entropy`` default ``reduction="mean"``,
    Caffe's SoftmaxWithLoss). Returns the loss as a 0-d array of the logits' dtype and
    module (no device sync) and a cache for ``backward``.
    """
    dtype = float_dtype("softmax", logits)
    require_ndim("softmax", "logits", logits, 2, "(N, M)")
    N, M = logits.shape
    xp = get_array_module(logits)
    if getattr(labels, "dtype", None) is None or labels.dtype.kind not in "iu":
        raise TypeError(
            f"softmax: labels must be an integer array, got "
            f"{getattr(labels, 'dtype', type(labels).__name__)}"
        )
    if tuple(labels.shape) != (N,):
        raise ValueError(
            f"softmax: labels must have shape ({N},) to match logits "
            f"{tuple(logits.shape)}, got {tuple(labels.shape)}"
        )
    labels = xp.asarray(labels)
    if N:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= M:
            bad = low if low < 0 else high
            raise ValueError(f"softmax: label {bad} out of range [0, {M})")
    e, z = _shifted_exp(logits)
    total = e.sum(axis=1)  # (N,)
    rows = xp.arange(N)
    loss = (xp.log(total) - z[rows, labels]).mean()  # 0-d, logits' dtype
    probs = e / total[:, None]  # (N, M)
    return loss.astype(dtype, copy=False), SoftmaxCache(probs, labels)


def backward(dloss: Array, cache: SoftmaxCache) -> Array:
    """dlogits[n, m] = dloss * (p[n, m] - [m == labels[n]]) / N; each row sums to zero."""
    probs, labels = cache.probs, cache.labels
    xp = get_array_module(probs)
    d = xp.asarray(dloss)
    if d.shape != ():
        raise ValueError(
            f"softmax: dloss must be a scalar (the loss is one), got shape {tuple(d.shape)}"
        )
    N = probs.shape[0]
    dlogits = probs.copy()  # (N, M)
    dlogits[xp.arange(N), labels] -= 1
    dlogits *= d.astype(probs.dtype) / probs.dtype.type(max(N, 1))
    return dlogits
