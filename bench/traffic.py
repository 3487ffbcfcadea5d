"""Bytes each rank sends per step, data parallel or hybrid: ``python -m refnet.bench.traffic``.

    python -m refnet.bench.traffic [--arch alexnet] [--batch 128] [--dtype float32]
                                   [--ranks 2,4,8] [--json PATH]

Exact counts from the network's shapes (``refnet.arch.param_shapes``); no MPI is needed.
Axes: N images of the global batch B, F features (fc6's inputs, 9216 for alexnet), O
output units of an fc layer; R ranks, r = 0 .. R - 1; blocks by ``numpy.array_split``.

- ``data``: rank r computes block r of the B images; ring allreduces sum the fc layers'
  gradients and the convolutions' (refnet's reducer's three buckets move the same bytes
  up to uneven chunks and the four scalars in its last bucket).
- ``hybrid`` (Krizhevsky 2014, arXiv:1404.5997; docs/distributed.md, "Hybrid
  parallel"): the convolutions as ``data`` (one allreduce); rank r holds block r of every
  fc layer's O units for all B images. Forward allgathers: pool5 (N x F, image blocks),
  fc6, fc7 (N x O) and the logits (N x classes, unit blocks); backward reduce-scatters of
  the input gradients of fc8 (N x O7), fc7 (N x O6) and fc6 (N x F, image rows); the
  labels and sample indices (B int64 each) are allgathered.

Rings (rank r sends to r + 1 mod R), every step's messages counted in full:

- allreduce of S elements in chunks c_0 .. c_{R-1}: reduce-scatter steps s = 0 .. R - 2
  send chunk (r - s) mod R, allgather steps chunk (r + 1 - s) mod R; rank r sends
  ``2 S - c_{(r+1) mod R} - c_{(r+2) mod R}`` elements (2 (R - 1) / R S when R divides S);
- allgather of blocks b (rank r starts with b_r): step s sends block (r - s) mod R, in
  all ``sum(b) - b_{(r+1) mod R}``;
- reduce-scatter to blocks b (rank r ends with b_r summed): step s sends the partial sum
  of block (r - 1 - s) mod R, in all ``sum(b) - b_r``.

Bytes are elements times 4 (float32) or 8 (float64), labels and indices 8. Printed: per
R the busiest rank's bytes for both schemes and their ratio (``--json``: every part for
every rank). Exit status: 0 printed, 2 for a bad option, 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NamedTuple

import numpy

from refnet.arch import ARCHS, get_arch, param_shapes
from refnet.data.cli import Parser, UserError, exit_status, new_file, positive_int, run_command

DTYPE_BYTES = {"float32": 4, "float64": 8}
INDEX_BYTES = 8  # int64 labels and sample indices
SCHEMES = ("data", "hybrid")
# The parts of a step's traffic, in the order of the step (both schemes name them all)
PARTS = (
    "fc_grad",  # allreduce of fc6-fc8's gradients (data)
    "conv_grad",  # allreduce of conv1-conv5's gradients (both)
    "labels",  # allgather of the labels (hybrid)
    "indices",  # allgather of the sample indices (hybrid)
    "gather_pool5",  # forward allgathers (hybrid)
    "gather_fc6",
    "gather_fc7",
    "gather_fc8",
    "scatter_fc8_dx",  # backward reduce-scatters (hybrid)
    "scatter_fc7_dx",
    "scatter_fc6_dx",
)


class Sizes(NamedTuple):
    """What the traffic depends on: parameter counts, fc6's inputs, the fc widths."""

    conv_params: int  # conv1-conv5, weights and biases
    fc_params: int  # fc6-fc8, weights and biases
    features: int  # F: fc6's inputs (pool5's maps, flattened)
    fc6: int  # output units of fc6, fc7 and fc8 (the classes)
    fc7: int
    fc8: int


def sizes(
    arch: str = "alexnet", columns: int | None = None, num_classes: int | None = None
) -> Sizes:
    """``Sizes`` of ``arch`` with ``columns`` columns (None: the arch's largest allowed,
    2 for alexnet) and ``num_classes`` classes (None: the arch's), read off
    ``refnet.arch.param_shapes``."""
    spec = get_arch(arch)
    shapes = param_shapes(
        spec,
        columns=max(spec.columns) if columns is None else columns,
        num_classes=num_classes,
        refnet_names=True,
    )
    counts = {name: int(numpy.prod(shape)) for name, shape in shapes.items()}
    fc = ("fc6", "fc7", "fc8")
    return Sizes(
        conv_params=sum(n for name, n in counts.items() if not name.startswith(fc)),
        fc_params=sum(n for name, n in counts.items() if name.startswith(fc)),
        features=shapes["fc6.weight"][1],
        fc6=shapes["fc6.weight"][0],
        fc7=shapes["fc7.weight"][0],
        fc8=shapes["fc8.weight"][0],
    )


def split(total: int, ranks: int) -> list[int]:
    """The block lengths of ``numpy.array_split`` of ``total`` items over ``ranks``."""
    return [len(block) for block in numpy.array_split(numpy.arange(total), ranks)]


def ring_allreduce_sent(elements: int, ranks: int) -> list[int]:
    """Elements each rank sends in a ring allreduce of ``elements`` (module doc)."""
    c = split(elements, ranks)
    return [2 * elements - c[(r + 1) % ranks] - c[(r + 2) % ranks] for r in range(ranks)]


def ring_allgather_sent(blocks: list[int]) -> list[int]:
    """Elements each rank sends in a ring allgather of ``blocks`` (rank r owns
    ``blocks[r]``; module doc)."""
    R = len(blocks)
    return [sum(blocks) - blocks[(r + 1) % R] for r in range(R)]


def ring_reduce_scatter_sent(blocks: list[int]) -> list[int]:
    """Elements each rank sends in a ring reduce-scatter that leaves ``blocks[r]`` summed
    on rank r (module doc)."""
    return [sum(blocks) - b for b in blocks]


def bytes_per_step(
    arch: str = "alexnet",
    ranks: int = 2,
    batch: int = 128,
    dtype: str = "float32",
    scheme: str = "hybrid",
    columns: int | None = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """The bytes each rank sends in one training step of ``scheme`` (module doc).

    ``batch`` is the global batch B, ``ranks`` R. Returns ``{"parts": {part: [bytes of
    rank 0, ..., rank R - 1]}, "total": [bytes per rank], "max": the busiest rank's
    bytes, "min": the least busy rank's, ...}`` with every name of ``PARTS`` (0 where the
    scheme has no such traffic), and the arguments. ``ValueError`` naming the bad value.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {tuple(DTYPE_BYTES)}, got {dtype!r}")
    for name, value in (("ranks", ranks), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
    s = sizes(arch, columns, num_classes)
    w = DTYPE_BYTES[dtype]
    R = ranks
    parts = {name: [0] * R for name in PARTS}

    def scaled(elements: list[int], nbytes: int = w) -> list[int]:
        return [nbytes * e for e in elements]

    parts["conv_grad"] = scaled(ring_allreduce_sent(s.conv_params, R))
    if scheme == "data":
        parts["fc_grad"] = scaled(ring_allreduce_sent(s.fc_params, R))
    else:
        images = split(batch, R)  # each rank's images (the convolutions' data parallel)
        units = {name: split(getattr(s, name), R) for name in ("fc6", "fc7", "fc8")}
        parts["labels"] = scaled(ring_allgather_sent(images), INDEX_BYTES)
        parts["indices"] = scaled(ring_allgather_sent(images), INDEX_BYTES)
        parts["gather_pool5"] = scaled(ring_allgather_sent([n * s.features for n in images]))
        for name in ("fc6", "fc7", "fc8"):
            blocks = [batch * u for u in units[name]]
            parts[f"gather_{name}"] = scaled(ring_allgather_sent(blocks))
        # fc8's input gradient goes to the owners of fc7's units, fc7's to fc6's units
        for layer, below in (("fc8", "fc7"), ("fc7", "fc6")):
            blocks = [batch * u for u in units[below]]
            parts[f"scatter_{layer}_dx"] = scaled(ring_reduce_scatter_sent(blocks))
        parts["scatter_fc6_dx"] = scaled(ring_reduce_scatter_sent([n * s.features for n in images]))
    total = [sum(parts[name][r] for name in PARTS) for r in range(R)]
    return {
        "arch": arch,
        "scheme": scheme,
        "ranks": R,
        "batch": batch,
        "dtype": dtype,
        "sizes": s._asdict(),
        "parts": parts,
        "total": total,
        "max": max(total),
        "min": min(total),
    }


def ranks_list(text: str) -> list[int]:
    """An ``argparse`` type: comma-separated rank counts, each >= 1."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"every rank count must be >= 1, got {text!r}")
    return values


def megabytes(b: int) -> str:
    """``b`` bytes in decimal units, three or four significant digits (``"18.51 MB"``)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.2f} {unit}"
    return f"{b} B"


def format_table(rows: list[dict[str, Any]]) -> list[str]:
    """The command's table: per R, the busiest rank's bytes per step for each scheme (with
    the least busy one where they differ), the ratio, and the hybrid's parts."""
    first = rows[0]["hybrid"]
    lines = [
        f"arch {first['arch']}, global batch {first['batch']}, {first['dtype']}: the bytes "
        "a rank sends per step, ring algorithms (python -m refnet.bench.traffic --help)",
        "| ranks | data parallel | hybrid | hybrid / data | hybrid: conv allreduce, "
        "forward allgathers, backward reduce-scatters, labels+indices |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        cells = []
        for scheme in SCHEMES:
            r = row[scheme]
            cell = megabytes(r["max"])
            if megabytes(r["min"]) != cell:
                cell = f"{megabytes(r['min'])}-{cell}"
            cells.append(cell)
        h = row["hybrid"]["parts"]
        busiest = row["hybrid"]["total"].index(row["hybrid"]["max"])

        def part_sum(prefix: str, parts: dict[str, list[int]] = h, r: int = busiest) -> int:
            return sum(v[r] for k, v in parts.items() if k.startswith(prefix))

        split_cell = (
            ", ".join(megabytes(part_sum(p)) for p in ("conv_grad", "gather_", "scatter_"))
            + f", {megabytes(h['labels'][busiest] + h['indices'][busiest])}"
        )
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.4f}"
        lines.append(f"| {row['ranks']} | {cells[0]} | {cells[1]} | {ratio} | {split_cell} |")
    return lines


def build_parser() -> Parser:
    p = Parser(
        prog="python -m refnet.bench.traffic",
        exit_codes={0: "printed"},
        description="Bytes each rank sends per training step, data parallel (gradients "
        "allreduced) and hybrid (convolutions data parallel, fc layers model parallel: "
        "Krizhevsky 2014, arXiv:1404.5997), counted from the network's shapes under ring "
        "allreduce, allgather and reduce-scatter: rank r sends to rank r + 1, in an allreduce "
        "every chunk but (r + 1) mod R then every chunk but (r + 2) mod R, in an allgather "
        "every block but its successor's, in a reduce-scatter every block but its own. "
        "Blocks and chunks follow numpy.array_split.",
    )
    p.add_argument(
        "--arch", choices=tuple(ARCHS), default="alexnet", help="the architecture (default alexnet)"
    )
    p.add_argument(
        "--batch", type=positive_int, default=128, help="the global batch B (default 128)"
    )
    p.add_argument("--dtype", choices=tuple(DTYPE_BYTES), default="float32", help="default float32")
    p.add_argument(
        "--ranks",
        type=ranks_list,
        default=[2, 4, 8],
        help="comma-separated rank counts (default 2,4,8)",
    )
    p.add_argument(
        "--json", metavar="PATH", type=new_file, help="also write every part per rank as JSON"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> None:
        rows = []
        for R in args.ranks:
            try:
                data, hybrid = (
                    bytes_per_step(args.arch, R, args.batch, args.dtype, scheme)
                    for scheme in SCHEMES
                )
            except ValueError as e:
                raise UserError(str(e)) from None
            ratio = hybrid["max"] / data["max"] if data["max"] else None  # None: R = 1
            rows.append({"ranks": R, "data": data, "hybrid": hybrid, "ratio": ratio})
        print("\n".join(format_table(rows)))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rows": rows}, f, indent=1)
                f.write("\n")

    return exit_status("refnet.bench.traffic", body)


if __name__ == "__main__":
    sys.exit(run_command(main, "refnet.bench.traffic"))
