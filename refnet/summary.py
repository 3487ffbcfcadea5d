"""``python -m refnet.summary``: each layer's output shape, parameters and FLOPs.

    python -m refnet.summary --arch alexnet

The table is read off the network's own layer list (``AlexNet.layers``): each layer
gives its output shape, parameters and FLOPs, so every architecture of
``refnet.arch.ARCHS`` appears with no table of its own.
Shapes are per image in the grouped single-device form, both columns together: maps as
(C, H, W), features as (F,).

FLOPs: forward, per image, a multiply-add counted as 2. Convolutions count the direct
form, 2 K (C / groups) kh kw Ho Wo, whatever algorithm computes them (Winograd does
fewer multiplications); fully-connected layers 2 F_out F_in. Bias additions, ReLU, LRN,
pooling, dropout and the exchanges between columns count 0. For ``alexnet``: 60,965,224
parameters and 0.72 G multiply-adds (1.45 GFLOP) per image. A training step's backward
adds dW for every layer and dX for every layer but the first (its input is the image):
``step_flops``.

Exit status: 0 printed, 2 for a bad option, 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from refnet.arch import ARCHS
from refnet.data.cli import Parser, exit_status, run_command
from refnet.network import build_network
from refnet.options import NetOptions

if TYPE_CHECKING:
    from refnet.network import AlexNet


class Row(NamedTuple):
    """One layer of the table: its output shape per image, parameters and FLOPs."""

    name: str
    kind: str
    shape: tuple[int, ...]
    params: int
    flops: int


def layer_table(net: AlexNet) -> list[Row]:
    """``[Row]``, one per layer of ``net.layers`` in order (module doc): each layer gives
    its output shape and FLOPs (``refnet.nodes.base.Layer``)."""
    counts = net.param_counts()
    s = net.spec.input_size
    shape: tuple[int, ...] = (3, s, s)
    rows: list[Row] = []
    for layer in net.layers:
        flops = layer.flops(shape)
        shape = tuple(layer.output_shape(shape))
        rows.append(Row(layer.name, type(layer).__name__, shape, counts.get(layer.name, 0), flops))
    return rows


def forward_flops(net: AlexNet) -> int:
    """Forward FLOPs per image of ``net`` (module doc)."""
    return sum(r.flops for r in layer_table(net))


def step_flops(net: AlexNet) -> tuple[int, int]:
    """(forward FLOPs, training-step FLOPs) per image: the backward pass computes dW for
    every conv and fc layer (as many FLOPs as its forward) and dX for every one but the
    first (the image needs no gradient)."""
    counted = [r.flops for r in layer_table(net) if r.flops]
    fwd = sum(counted)
    return fwd, fwd + 2 * fwd - counted[0]


def format_table(name: str, rows: Sequence[Row]) -> list[str]:
    """The table of one architecture as text lines, totals last."""
    n = max([12] + [len(r.name) for r in rows])  # column widths: the longest
    k = max([9] + [len(r.kind) for r in rows])
    head = f"{'layer':<{n}s} {'kind':<{k}s} {'output':>16s} {'params':>12s} {'FLOPs':>15s}"
    lines = [f"arch {name}", head, "-" * len(head)]
    for r in rows:
        shape = "x".join(str(d) for d in r.shape)
        lines.append(f"{r.name:<{n}s} {r.kind:<{k}s} {shape:>16s} {r.params:>12,d} {r.flops:>15,d}")
    params, flops = sum(r.params for r in rows), sum(r.flops for r in rows)
    lines += [
        "-" * len(head),
        f"{'total':<{n}s} {'':<{k}s} {'':>16s} {params:>12,d} {flops:>15,d}",
        f"{params:,d} parameters; {flops // 2:,d} multiply-adds = "
        f"{flops / 1e9:.4g} GFLOP forward per image",
    ]
    return lines


EXIT_CODES = {0: "printed"}


def build_parser() -> Parser:
    p = Parser(
        prog="python -m refnet.summary",
        exit_codes=EXIT_CODES,
        description="Each layer's output shape, parameters and forward FLOPs per image "
        "(a multiply-add is 2 FLOPs; conv and fc only: bias, ReLU, LRN, "
        "pooling and dropout count 0), with the totals.",
    )
    p.add_argument(
        "--arch",
        choices=(*ARCHS, "all"),
        default="all",
        help="the architecture, or all of them (default all)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> None:
        names = list(ARCHS) if args.arch == "all" else [args.arch]
        for i, name in enumerate(names):
            net = build_network(NetOptions(arch=name))
            print(("\n" if i else "") + "\n".join(format_table(name, layer_table(net))))

    return exit_status("refnet.summary", body)


if __name__ == "__main__":
    sys.exit(run_command(main, "refnet.summary"))
