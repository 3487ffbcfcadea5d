"""The images: (N, 3, S, S) on every column's device, in the maps' layout.

Plain: the same NCHW array on each column's device. Fast: transposed once on column 0's
device to the layout of the maps (CHWN: (3, S, S, N)) and given to the others from there;
with every column on one device, the column threads copy a band of rows each.
No gradient flows back.
"""

from __future__ import annotations

from refnet.layers import layout as layouts
from refnet.layers.backend import Array
from refnet.nodes.base import Context, Layer, Pass
from refnet.nodes.describe import OnnxGraph


class Input(Layer):
    gathers = True  # every column holds all of it

    def onnx(self, g: OnnxGraph, shape: tuple[int, ...]) -> None:
        pass  # the graph's input is named "input"

    def forward(self, x: Array, pass_: Pass, ctx: Context) -> tuple[list[Array], None]:
        P, columns = ctx.placement, len(ctx.columns)
        if ctx.engine == "plain":
            return [P.put(x, c) for c in range(columns)], None
        with P.device(0):
            x = P.put(x, 0)
            if ctx.layout == "CHWN" and len(set(P.devices)) == 1 and columns > 1:
                y = P.workspaces[0].empty(P.xp, layouts.shape(*x.shape, ctx.layout), x.dtype)  # type: ignore[call-arg]  # x: (N, C, H, W)
                s = x.shape[2]
                bands = [slice(s * c // columns, s * (c + 1) // columns) for c in range(columns)]
                P.each(lambda c, rows: self._copy(x, y, rows), bands)
                x = y
            else:
                x = layouts.transpose(x, "NCHW", ctx.layout, ws=P.workspaces[0])
        return [P.put(x, c) for c in range(columns)], None

    @staticmethod
    def _copy(x: Array, y: Array, rows: slice) -> None:
        """Rows ``rows`` of the images x (N, C, H, W) into y (C, H, W, N)."""
        y[:, rows] = x[:, :, rows].transpose(1, 2, 3, 0)

    def backward(
        self, d: list[Array], cache: None, grads: list[dict[str, Array]], ctx: Context
    ) -> None:
        return None
