"""One table across frameworks: a row per layer and direction, a column per framework,
each cell the worst judged comparison there (``python -m refnet.verify --against a,b,c``).

Which layer and direction a report row (``verify.compare.Row``) belongs to:

- layer: rows of PyTorch's parts ``network``, ``sgd``, ``conventions`` and ``reference``
  belong to that part. Every other row names its layer as the first word of its case,
  trailing digits dropped (``conv1 11x11/4 ...`` -> conv, ``lrn n=5 ...`` -> lrn,
  ``maxpool 3/2 ...`` -> pool); a case that starts with an architecture's name
  (``refnet.arch.ARCHS``: ``tiny N=4 train``, ``alexnet b2``) compares the whole
  network -> network, except a row whose quantity is one layer's output inside it
  (ONNX's intermediate outputs: ``conv1``, ``relu_fc6``, ``fc8``) -> that kind of layer.
- direction: ``bwd`` when the quantity is a gradient (dx, dw, db, dlogits, or "d "
  and a parameter's name: "d conv1.weight"), else ``fwd`` (y, loss, logits, a layer's
  output such as conv1 or dropout_fc6); ``-`` for ``sgd`` and ``conventions``, which
  are neither.

A cell is the largest relative error among the judged (PASS/FAIL) rows, with FAIL when
any of them fails; INFO rows are not judged and not counted; ``-`` where the framework
has no row. A framework that could not run has "skipped" in every cell, its reason in
the column's header and in a line under the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy

from refnet.arch import ARCHS
from refnet.verify.compare import Row

OWN_PARTS = ("network", "sgd", "conventions", "reference")  # PyTorch's, by part name
NO_DIRECTION = ("sgd", "conventions")
ALIASES = {"maxpool": "pool"}
# a whole network's row whose quantity is one layer's output (ONNX's intermediate
# outputs: conv1, relu_fc6, dropout_fc7, fc8, head) counts for that kind of layer
LAYER_OUTPUT = re.compile(r"^(conv|head|fc|relu|lrn|pool|dropout|gap)(\d|_|$)[\w]*$")
LAYER_KINDS = {
    "conv": "conv",
    "head": "conv",
    "fc": "linear",
    "relu": "relu",
    "lrn": "lrn",
    "pool": "pool",
    "dropout": "dropout",
    "gap": "gap",
}
GRADIENTS = ("dx", "dw", "db", "dlogits")
ORDER = (
    "conv",
    "relu",
    "lrn",
    "pool",
    "dropout",
    "linear",
    "softmax",
    "gap",
    "network",
    "sgd",
    "conventions",
    "reference",
)


def layer_of(row: Row) -> str:
    """The layer a row belongs to (module doc)."""
    if row.part in OWN_PARTS:
        return row.part
    word = row.case.split()[0] if row.case.split() else row.case
    if word in ARCHS:
        inner = LAYER_OUTPUT.match(row.quantity)  # one layer's output inside a net
        return LAYER_KINDS[inner.group(1)] if inner else "network"
    word = re.sub(r"\d+$", "", word)
    return ALIASES.get(word, word)


def direction_of(row: Row) -> str:
    """``fwd``, ``bwd`` or ``-`` (module doc)."""
    if layer_of(row) in NO_DIRECTION:
        return "-"
    gradient = row.quantity in GRADIENTS or row.quantity.startswith("d ")
    return "bwd" if gradient else "fwd"


def worst(rows: Iterable[Row]) -> tuple[float, str] | None:
    """(largest max rel err, "PASS"/"FAIL") of the judged rows, or None if none is judged."""
    judged = [r for r in rows if r.status in ("PASS", "FAIL")]
    if not judged:
        return None
    errs = [r.max_rel for r in judged if not numpy.isnan(r.max_rel)]
    failed = any(r.status == "FAIL" for r in judged)
    return (max(errs) if errs else float("nan")), ("FAIL" if failed else "PASS")


def cell(result: tuple[float, str] | None) -> str:
    if result is None:
        return "-"
    err, status = result
    return f"{'-' if numpy.isnan(err) else f'{err:.1e}'} {status}"


def keys_in_order(results: Mapping[str, Sequence[Row]]) -> list[tuple[str, str]]:
    """The (layer, direction) pairs present, in ``ORDER`` (others after, as met)."""
    seen = list(
        dict.fromkeys(
            (layer_of(r), direction_of(r)) for rows in results.values() if rows for r in rows
        )
    )
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(seen, key=lambda k: (rank.get(k[0], len(ORDER)), seen.index(k)))


def format_framework_table(
    results: Mapping[str, Sequence[Row]],
    skipped: Mapping[str, str],
    titles: Mapping[str, str] | None = None,
    order: Sequence[str] | None = None,
) -> str:
    """The table (module doc). ``results``: {framework: rows} for those that ran;
    ``skipped``: {framework: reason} for those that could not; ``titles``: {framework:
    the header's second line, e.g. 'PyTorch 2.13.0'}; ``order``: the columns' order
    (default: those that ran, then the skipped)."""
    titles = titles or {}
    names = list(order or [*results, *(n for n in skipped if n not in results)])
    table = [
        ["layer", "dir", *names],
        [
            "",
            "",
            *(f"skipped ({skipped[n]})" if n in skipped else titles.get(n, "") for n in names),
        ],
    ]
    for layer, direction in keys_in_order(results):
        line = [layer, direction]
        for n in names:
            mine = [
                r
                for r in results.get(n, ())
                if layer_of(r) == layer and direction_of(r) == direction
            ]
            line.append("skipped" if n in skipped else cell(worst(mine)))
        table.append(line)
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]
    out.insert(2, "  ".join("-" * w for w in widths))
    out += [f"{n}: skipped ({skipped[n]})" for n in names if n in skipped]
    out += [
        f"{n}: {sum(r.status == 'PASS' for r in results[n])} passed, "
        f"{sum(r.status == 'FAIL' for r in results[n])} failed"
        for n in results
    ]
    return "\n".join(out)
