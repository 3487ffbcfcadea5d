"""A crossing between columns as a layer: every column's output concatenated on the
columns ``to`` (all by default) along ``axis`` (``refnet.exchange``); backward sums the
gradients of an activation read by several columns. In the grouped single-device form
(summary, ONNX) the columns' maps are already side by side: the identity."""

from __future__ import annotations

from typing import Any

from refnet import exchange
from refnet.layers.backend import Array
from refnet.nodes.base import Context, Layer, Pass


class Exchange(Layer):
    """``Exchange(name, axis, to=None)``: axis 1 for NCHW maps and (N, F) features, 0
    for CHWN maps."""

    gathers = True

    def __init__(self, name: str, axis: int, to: tuple[int, ...] | None = None) -> None:
        super().__init__(name)
        self.axis, self.to = axis, to

    def forward(self, h: list[Array], pass_: Pass, ctx: Context) -> tuple[list[Array], Any]:
        return exchange.forward(h, place=ctx.placement, axis=self.axis, to=self.to)

    def backward(
        self, d: list[Array], cache: Any, grads: list[dict[str, Array]], ctx: Context
    ) -> list[Array] | None:
        return exchange.backward(d, cache, place=ctx.placement)
