"""pool5's maps as fc6's input: (N, F) features, F in (C, S, S) order (``torch.flatten``).

Plain: ``layers.plain.flatten_forward``. Fast with CHWN maps: the (C, S, S, N) maps are
(F, N) and fc6 reads their transpose (a view, no copy).
"""

import math

from refnet.layers import plain
from refnet.nodes.base import Local


class Flatten(Local):
    plain = plain.flatten

    def output_shape(self, shape):
        return (math.prod(shape),)

    def onnx(self, g, shape):
        g.node("Flatten", [g.last], self.name, axis=1)

    def column_forward(self, col, a, pass_, extra):
        if col.layout == "NCHW":
            return a.reshape(a.shape[0], -1), a.shape
        return a.reshape(-1, a.shape[-1]).T, a.shape

    def column_backward(self, col, g, shape, grads):
        if col.layout == "NCHW":
            return g.reshape(shape)
        return g.T.reshape(shape)  # (C, S, S, N) views
