"""Cache blocking: how much work one block holds, and how an axis is cut into blocks.

Several layers make a few elementwise passes over a large array (LRN, pooling's phase
planes, col2im's kh*kw additions, ReLU's backward, the SGD update). On the CPU they run
over blocks of about ``CPU_BLOCK_BYTES``, so every pass after the first reads the cache
(L2, and the shared L3) instead of memory. The size is a balance: each block costs a
dozen or more NumPy calls, and with the two column threads running at once every call
hands Python's lock over (a 64 KiB call measured 1.2 us alone and 5.4 us with the other
thread calling too), so blocks of one core's L2 (1 MiB) made the step 3-6% slower than
2-3 MiB ones (docs/performance.md). On a GPU one kernel over everything is best: no
block limit (except that pooling, whose blocks copy their input, runs in halves:
``copy_block_bytes``).
Winograd's transform-domain temporaries are n*n/m^2 times the size of the output, so its
tile rows run in chunks of about ``CHUNK_BYTES`` on every device, to bound memory.

Every caller applies the same operations to each element in the same order whatever the
blocks are, so blocking changes no result except where a sum runs over blocks (Winograd's
dw sums its chunks), and there the blocks depend only on the shapes and these budgets.

``runs`` cuts one axis; ``nested_runs`` cuts a pair of axes (outer, inner), taking whole
outer items while one fits and runs of the inner axis inside each outer item otherwise.
"""

from __future__ import annotations

import numpy

from refnet.layers.backend import Module

__all__ = [
    "CPU_BLOCK_BYTES",
    "GEMM_BLOCK_BYTES",
    "CHUNK_BYTES",
    "block_bytes",
    "copy_block_bytes",
    "runs",
    "nested_runs",
]

CPU_BLOCK_BYTES = 2 << 20  # one to two cores' L2; fewer, larger NumPy calls (module doc)
GEMM_BLOCK_BYTES = 2 << 20  # conv1's blocks of im2col columns (layers.conv_blocks)
CHUNK_BYTES = 64 << 20  # Winograd's largest per-chunk temporary (docs/performance.md)


def block_bytes(xp: Module) -> int | None:
    """The working-set budget of cache-blocked loops: ``CPU_BLOCK_BYTES`` for NumPy, else
    ``None`` (no limit)."""
    return CPU_BLOCK_BYTES if xp is numpy else None


def copy_block_bytes(xp: Module, total_bytes: int) -> int:
    """The budget of a loop whose blocks each make a temporary copy of their input:
    ``block_bytes(xp)`` on the CPU, and on a GPU half of the ``total_bytes`` of input
    (rounded up, at least 1), so the copy stays smaller than the input."""
    return block_bytes(xp) or max(1, -(-total_bytes // 2))


def runs(count: int, item_bytes: int, budget: int | None, *, balanced: bool = False) -> list[slice]:
    """Consecutive slices covering ``range(count)``, each of about ``budget`` bytes of
    items of ``item_bytes`` each, at least one item per slice; one slice when ``budget``
    is ``None``.

    Greedy: ``budget // item_bytes`` items per slice, the last one shorter.
    ``balanced=True``: ``ceil(count / parts)`` items per slice (the last one shorter) for
    ``parts = ceil(count * item_bytes / budget)``, the fewest slices the budget allows,
    evened out instead of filled to the budget; a slice may then exceed ``budget`` by
    less than one item.
    """
    if budget is None or count == 0:
        return [slice(0, count)]
    item_bytes = max(1, item_bytes)
    size = max(1, budget // item_bytes)
    if balanced:
        size = -(-count // min(count, -(-count * item_bytes // budget)))
    return [slice(i, min(count, i + size)) for i in range(0, count, size)]


def nested_runs(
    outer: int, inner: int, inner_bytes: int, budget: int | None, *, balanced: bool = False
) -> list[tuple[slice, slice]]:
    """``(outer slice, inner slice)`` pairs covering an (outer, inner) pair of axes in
    blocks of about ``budget`` bytes, ``inner_bytes`` per inner item.

    Runs of whole outer items (``budget // (inner * inner_bytes)`` of them) when one fits
    in the budget; otherwise one outer item at a time, its inner axis cut by ``runs``
    (``balanced`` as there). One block when ``budget`` is ``None``.
    """
    if budget is None:
        return [(slice(0, outer), slice(0, inner))]
    whole = inner * inner_bytes
    if whole <= budget:
        return [(o, slice(0, inner)) for o in runs(outer, whole, budget)]
    return [
        (slice(o, o + 1), i)
        for o in range(outer)
        for i in runs(inner, inner_bytes, budget, balanced=balanced)
    ]
