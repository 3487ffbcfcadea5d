"""The fast engine's SGD update: ``refnet.sgd``'s rule in place, in blocks of rows.

Axis legend: R rows of a parameter (its outputs). The same operations per element, in the
same order, as the whole-array update, so the blocking changes no result; in blocks of
rows of about ``layers.blocking.block_bytes`` on the CPU (one block on a GPU), so the four
passes over each parameter work in cache (docs/performance.md).
"""

from __future__ import annotations

from refnet.layers import blocking
from refnet.layers.backend import Array, Module


def update_in_blocks(
    xp: Module, w: Array, v: Array, g: Array, lr: float, m: float, wd: float, form: str
) -> None:
    """One step of ``form``'s rule on parameter w (R, ...) and its velocity v, in place,
    a block of rows at a time (module doc)."""
    budget = blocking.block_bytes(xp)
    for r in blocking.runs(w.shape[0], w[:1].nbytes, budget):
        update_block(w[r], v[r], g[r], lr, m, wd, form)


def update_block(w: Array, v: Array, g: Array, lr: float, m: float, wd: float, form: str) -> None:
    """The rule on one block, in place (``refnet.sgd``'s module doc)."""
    v *= m
    if form == "paper":  # v = m v - wd lr w - lr g; w += v
        if wd:
            v -= (wd * lr) * w
        v -= lr * g
        w += v
    else:  # v = m v + g + wd w; w -= lr v
        v += g
        if wd:
            v += wd * w
        w -= lr * v
