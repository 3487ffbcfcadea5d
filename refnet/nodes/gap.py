"""The "gap" head's global average: each class map averaged over its positions, (N, K)
logits (Network-in-Network, GoogLeNet). ``layers.gap`` serves both engines."""

from refnet.layers import gap
from refnet.nodes.base import Local


class Gap(Local):
    plain = fast = gap

    def output_shape(self, shape):
        return (shape[0],)

    def onnx(self, g, shape):
        g.node("GlobalAveragePool", [g.last], f"{self.name}/maps")  # (N, K, 1, 1)
        g.node("Flatten", [g.last], self.name, axis=1)  # (N, K)

    def tuning(self, col):
        return dict(layout=col.layout)
