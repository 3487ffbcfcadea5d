"""pool5's maps as fc6's input: (N, F) features, F in (C, S, S) order (``torch.flatten``).

Plain: ``layers.plain.flatten_forward``. Fast with CHWN maps: the (C, S, S, N) maps are
(F, N) and fc6 reads their transpose (a view, no copy).
"""

from __future__ import annotations

import math
from typing import Any

from refnet.layers import plain
from refnet.layers.backend import Array
from refnet.nodes.base import Column, Local, Pass
from refnet.nodes.describe import OnnxGraph


class Flatten(Local):
    plain = plain.flatten

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(shape),)

    def onnx(self, g: OnnxGraph, shape: tuple[int, ...]) -> None:
        g.node("Flatten", [g.last], self.name, axis=1)

    def column_forward(
        self, col: Column, a: Array, pass_: Pass, extra: dict[str, Any]
    ) -> tuple[Array, Any]:
        if col.layout == "NCHW":
            return a.reshape(a.shape[0], -1), a.shape
        return a.reshape(-1, a.shape[-1]).T, a.shape

    def column_backward(
        self, col: Column, g: Array, shape: tuple[int, ...], grads: dict[str, Array]
    ) -> Array:
        if col.layout == "NCHW":
            return g.reshape(shape)
        return g.T.reshape(shape)  # (C, S, S, N) views
