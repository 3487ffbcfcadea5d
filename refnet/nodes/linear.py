"""The fully-connected layers fc6, fc7, fc8: y = x W^T + b on (N, F) features.

fc6 and fc7 compute half of their outputs in each column; fc8 lives on column 0.
``layers.linear`` has no clever fast path: both engines call it (the fast one with the
column's workspace).
"""

from refnet.layers import linear
from refnet.nodes.base import Local


class Linear(Local):
    """``Linear(name, shapes=)``: {weight key: (F_out, F_in), bias key: (F_out,)}."""

    plain = fast = linear
    bench_kind = "linear"  # its case in bench.layers
    splits = True

    def __init__(self, name, *, shapes):
        super().__init__(name)
        self.shapes = dict(shapes)
        self.keys = tuple(self.shapes)

    def param_shapes(self):
        return dict(self.shapes)

    def output_shape(self, shape):
        out, inp = self.shapes[self.keys[0]]
        if tuple(shape) != (inp,):
            raise ValueError(f"{self.name} takes {inp} features, gets {tuple(shape)}")
        return (out,)

    def flops(self, shape):
        out, inp = self.shapes[self.keys[0]]
        return 2 * out * inp

    def onnx(self, g, shape):
        wkey, bkey = self.keys
        g.node("Gemm", [g.last, g.param(wkey), g.param(bkey)], self.name, transB=1)

    def bench_case(self, shape, batch):
        return self.bench_kind, (batch, *shape), dict(w=self.shapes[self.keys[0]])

    @staticmethod
    def bench_pair(xp, x, w, b, p, layout):
        return (lambda: linear.forward(x, w, b)), (lambda out: linear.backward(*out))

    @staticmethod
    def bench_share(shape, p, columns):
        """Each column its share of the outputs, from all of the input."""
        return shape, dict(p, w=(p["w"][0] // columns, p["w"][1]))

    @staticmethod
    def bench_torch(ops, x, w, b, p):
        return ops.F.linear(x, w, b)

    def tuning(self, col):
        return dict(ws=col.ws)

    backward_tuning = tuning
