"""A crossing between columns as a layer: every column's output concatenated on the
columns ``to`` (all by default) along ``axis`` (``refnet.exchange``); backward sums the
gradients of an activation read by several columns. In the grouped single-device form
(summary, ONNX) the columns' maps are already side by side: the identity."""

from refnet import exchange
from refnet.nodes.base import Layer


class Exchange(Layer):
    """``Exchange(name, axis, to=None)``: axis 1 for NCHW maps and (N, F) features, 0
    for CHWN maps."""

    gathers = True

    def __init__(self, name, axis, to=None):
        super().__init__(name)
        self.axis, self.to = axis, to

    def forward(self, h, pass_, ctx):
        return exchange.forward(h, place=ctx.placement, axis=self.axis, to=self.to)

    def backward(self, d, cache, grads, ctx):
        return exchange.backward(d, cache, place=ctx.placement)
