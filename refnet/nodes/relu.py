"""ReLU after every convolution and after fc6 and fc7: y = max(x, 0).

``layers.relu`` serves both engines; the fast one writes in place over the layer
below's output (nothing else keeps it) and takes the column's workspace.
"""

from refnet.layers import relu
from refnet.nodes.base import Local


class Relu(Local):
    plain = fast = relu
    bench_kind = "relu"  # its case in bench.layers

    def onnx(self, g, shape):
        g.node("Relu", [g.last], self.name)

    def bench_case(self, shape, batch):
        if len(shape) != 3:
            return None  # the bench times the ReLUs of the maps, not of features
        return self.bench_kind, (batch, *shape), {}

    @staticmethod
    def bench_pair(xp, x, w, b, p, layout):
        return (lambda: relu.forward(x)), (lambda out: relu.backward(*out))

    @staticmethod
    def bench_torch(ops, x, w, b, p):
        return ops.F.relu(x)

    def tuning(self, col):
        # in place: the layer below's output is this layer's alone
        return dict(ws=col.ws, inplace=True)

    backward_tuning = tuning
