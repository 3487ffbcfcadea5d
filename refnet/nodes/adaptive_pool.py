"""torchvision's average pooling of pool5's maps to a fixed side (``owt``: 6x6, the
identity at 224 pixels): each output the mean of its bin (PyTorch's bins).

Plain: ``layers.plain.adaptive_pool_forward`` bin by bin. Fast: ``layers.adaptive_pool``
as two averaging matrices, in either layout.
"""

from __future__ import annotations

from typing import Any

from refnet.layers import adaptive_pool, plain
from refnet.nodes.base import Column, Local
from refnet.nodes.describe import OnnxGraph


class AdaptivePool(Local):
    """``AdaptivePool(name, side=)``: the output's side."""

    plain = plain.adaptive_pool
    fast = adaptive_pool

    def __init__(self, name: str, *, side: int) -> None:
        super().__init__(name)
        self.side = side
        self.settings = dict(out=side)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], self.side, self.side)

    def onnx(self, g: OnnxGraph, shape: tuple[int, ...]) -> None:
        """The identity where the input already has the side, an AveragePool where the
        side divides the input's evenly (the same bins as PyTorch's rule then); other
        sizes have no single ONNX operator."""
        have, side = shape[1], self.side
        if have == side:
            g.node("Identity", [g.last], self.name)
        elif have % side == 0:
            k = have // side
            g.node("AveragePool", [g.last], self.name, kernel_shape=[k, k], strides=[k, k])
        else:
            raise ValueError(
                f"export: average pooling of {have}x{have} maps to "
                f"{side}x{side} has bins of unequal size, which no ONNX "
                "operator computes"
            )

    def tuning(self, col: Column) -> dict[str, Any]:
        return dict(layout=col.layout)
