"""Convolution in the network's list: conv1-conv5, or the "gap" head's 1x1 convolution.

Axis legend: N batch, C input channels, K kernels, H/W height/width, k kernel side.

Each column computes its share of the kernels (``param_shapes`` are the grouped form's,
(K, C / groups, k, k); column c holds rows c K / columns .. (c + 1) K / columns). Plain:
``layers.plain.conv_forward``. Fast: ``layers.conv`` by Winograd for stride-1 layers with
kernels over 1x1 (``algo="winograd"``), else im2col + GEMM, keeping the unfolded input
or only the input (``cache``); conv1 with every column on one device (all read the same
image) runs as one convolution by blocks of output positions (``layers.conv_blocks``)
with the columns' kernels stacked, its output rows split between the column threads;
each column's output is its channels of the result, and only the image is kept.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from refnet.layers import conv, conv_blocks, plain
from refnet.layers import layout as layouts
from refnet.layers.backend import Array, Module
from refnet.nodes.base import Column, Context, Local, Pass
from refnet.nodes.describe import BenchCase, BenchPair, OnnxGraph


class Conv(Local):
    """``Conv(name, kernel=, stride=, pad=, shapes=, algo=, cache=, first=)``: ``shapes``
    {weight key: (K, C / groups, k, k), bias key: (K,)} (weight first); ``algo`` "gemm"
    or "winograd" (used where the stride is 1 and the kernel over 1x1); ``cache``
    "unfolded" or "input"; ``first``: its input is the image (no dx)."""

    plain = plain.conv
    fast = conv
    bench_kind = "conv"  # its case in bench.layers
    splits = True  # each column holds its share of the outputs

    def __init__(
        self,
        name: str,
        *,
        kernel: int,
        stride: int,
        pad: int,
        shapes: dict[str, tuple[int, ...]],
        algo: str = "gemm",
        cache: str = "unfolded",
        first: bool = False,
    ) -> None:
        super().__init__(name)
        self.kernel, self.stride, self.pad = kernel, stride, pad
        self.shapes = dict(shapes)
        self.keys = tuple(self.shapes)
        self.algo = "winograd" if (algo == "winograd" and stride == 1 and kernel > 1) else "gemm"
        self.cache = cache
        self.settings = dict(stride=stride, pad=pad)
        self.backward_settings = dict(need_dx=not first)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self.shapes)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        _, h, w = shape
        side = [(s + 2 * self.pad - self.kernel) // self.stride + 1 for s in (h, w)]
        return (self.shapes[self.keys[0]][0], *side)

    def flops(self, shape: tuple[int, ...]) -> int:
        _, ho, wo = self.output_shape(shape)
        return 2 * math.prod(self.shapes[self.keys[0]]) * ho * wo

    def groups(self, shape: tuple[int, ...]) -> int:
        """The grouped form's groups for an input of ``shape``: C / the weight's C."""
        c, per_group = shape[0], self.shapes[self.keys[0]][1]
        if c % per_group:
            raise ValueError(
                f"{self.name}: weight {self.shapes[self.keys[0]]} does not "
                f"divide {c} input channels into groups"
            )
        return c // per_group

    def onnx(self, g: OnnxGraph, shape: tuple[int, ...]) -> None:
        wkey, bkey = self.keys
        g.node(
            "Conv",
            [g.last, g.param(wkey), g.param(bkey)],
            self.name,
            kernel_shape=[self.kernel] * 2,
            strides=[self.stride] * 2,
            pads=[self.pad] * 4,
            group=self.groups(shape),
        )

    def bench_case(self, shape: tuple[int, ...], batch: int) -> BenchCase | None:
        settings = dict(
            w=self.shapes[self.keys[0]],
            stride=self.stride,
            pad=self.pad,
            groups=self.groups(shape),
            algo=self.algo,
        )
        return self.bench_kind, (batch, *shape), settings

    @staticmethod
    def bench_pair(
        xp: Module, x: Array, w: Array, b: Array, p: dict[str, Any], layout: str
    ) -> BenchPair:
        """(forward, backward) of the fast form on a bench case (``bench.layers``)."""
        kw = dict(
            stride=p["stride"], pad=p["pad"], groups=p["groups"], algo=p["algo"], layout=layout
        )
        return (lambda: conv.forward(x, w, b, **kw)), (lambda out: conv.backward(*out))

    @staticmethod
    def bench_share(
        shape: tuple[int, ...], p: dict[str, Any], columns: int
    ) -> tuple[tuple[int, ...], dict[str, Any]]:
        """Each column its share of the kernels, on the channels of its group."""
        N, C, H, W = shape
        w = p["w"]
        return (N, C // p["groups"], H, W), dict(p, w=(w[0] // columns,) + w[1:], groups=1)

    @staticmethod
    def bench_torch(ops: Any, x: Any, w: Any, b: Any, p: dict[str, Any]) -> Any:
        return ops.F.conv2d(x, w, b, stride=p["stride"], padding=p["pad"], groups=p["groups"])

    # -- the fast engine -------------------------------------------------------------
    def tuning(self, col: Column) -> dict[str, Any]:
        return dict(
            keep_cols=self.cache == "unfolded", algo=self.algo, layout=col.layout, ws=col.ws
        )

    def backward_tuning(self, col: Column) -> dict[str, Any]:
        return dict(ws=col.ws)

    def _shared(self, ctx: Context, h: list[Array] | None) -> bool:
        return (
            ctx.engine == "fast"
            and h is not None
            and self.name == "conv1"
            and self.algo == "gemm"
            and ctx.placement.shared_input(h)
        )

    def fusable(self, ctx: Context, h: list[Array] | None) -> bool:
        return not self._shared(ctx, h)

    def forward(self, h: list[Array], pass_: Pass, ctx: Context) -> tuple[list[Array], Any]:
        if self._shared(ctx, h):
            return self._forward_shared(h[0], ctx)
        return super().forward(h, pass_, ctx)

    def _forward_shared(self, x: Array, ctx: Context) -> tuple[list[Array], SharedCache]:
        P, columns = ctx.placement, len(ctx.columns)
        wkey, bkey = self.keys
        with P.device(0):
            w = P.xp.concatenate([col.params[wkey] for col in ctx.columns])
            b = P.xp.concatenate([col.params[bkey] for col in ctx.columns])
            y, cache, runs = conv_blocks.forward_parts(
                x,
                w,
                b,
                stride=self.stride,
                pad=self.pad,
                layout=ctx.layout,
                parts=columns,
                ws=P.workspaces[0],
            )  # w: (K of all columns, ...)
        P.each(lambda c, fill: fill(), runs)
        axis = layouts.channel_axis(ctx.layout)
        k = y.shape[axis] // columns
        ys = [y[layouts.along(axis, slice(c * k, (c + 1) * k))] for c in range(columns)]
        return ys, SharedCache(cache, k)

    def backward(
        self, d: list[Array], cache: Any, grads: list[dict[str, Array]], ctx: Context
    ) -> list[Array] | None:
        if isinstance(cache, SharedCache):
            return self._backward_shared(d, cache, grads, ctx)
        return super().backward(d, cache, grads, ctx)

    def _backward_shared(
        self, d: list[Array], cache: SharedCache, grads: list[dict[str, Array]], ctx: Context
    ):
        P, columns = ctx.placement, len(ctx.columns)
        runs = conv_blocks.backward_parts(d, cache.cache, parts=columns)
        partials = P.each(lambda c, run: run(), runs)  # dw^T of each band of rows
        with P.device(0):
            dw, db = conv_blocks.gradients(d, partials, cache.cache)
        k, (wkey, bkey) = cache.kernels, self.keys
        for c in range(columns):  # column c's kernels
            grads[c][wkey] = dw[c * k : (c + 1) * k]
            grads[c][bkey] = db[c * k : (c + 1) * k]
        return None  # the image has no gradient


class SharedCache(NamedTuple):
    cache: conv_blocks.BlocksCache  # layers.conv_blocks.BlocksCache of all columns' kernels
    kernels: int  # each column's
