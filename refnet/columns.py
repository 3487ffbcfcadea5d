"""Placement: which column lives on which device, how parameters split, how columns run.

Axis legend: N batch, C channels (one column's or both columns'), H/W height/width,
F features of a fully-connected layer's input, R rows of a parameter (its outputs).

Two columns, one per device: each holds half of every layer's kernels (column 0 the
first half of the grouped single-device form's outputs, column 1 the second), with its
parameters, activations, gradients and momentum on its device. Activations cross
between columns only where the paper's topology (and cuda-convnet2's configuration)
does, through the layers of ``refnet.exchange``:

    conv3  takes both columns' pool2 maps           (exchange to both columns)
    fc6    takes both columns' pool5 maps, flattened (exchange to both columns)
    fc7    takes both columns' fc6 outputs           (exchange to both columns)
    fc8    takes both columns' fc7 outputs           (exchange to column 0 only:
                                                      fc8 and the loss live on column 0)

With ``head="gap"`` the last three are one: the 1x1 convolution ``head`` takes both
columns' conv5 maps, on column 0 with the loss. With ``lrn_mode="all"`` a halo of
``size // 2`` channels crosses the columns' boundary before LRN1 and LRN2.

Transfers go through ``Placement.move`` (``layers.backend.to_device``, a strided view
made contiguous first); each computation runs under ``layers.backend.device`` of the
column that owns its result. NumPy: both columns on the CPU. CuPy: devices 0 and 1 with
two GPUs, else both on 0. ``Placement.each`` runs one step of every column: on GPUs
queued one column after the other; on the CPU with two or more cores in two threads,
one core and one BLAS thread each (needs ``threadpoolctl``, else one after the other),
each column with its own workspace (``workspaces``). A column that runs alone (fc8 and
the loss on column 0) keeps one BLAS thread too: OpenBLAS's idle threads spin for a
while after a call that woke them, and one spinning beside the two column threads
took a core from them (the demo's step at batch 128 took 1.3x as long). Results do not
depend on the threading; docs/performance.md ("Two columns on two cores") has the figures.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import numpy

from refnet.layers import backend
from refnet.layers.backend import Array, Module
from refnet.layers.workspace import FRESH, Workspace

T = TypeVar("T")


def default_devices(xp: Module, columns: int) -> tuple[int, ...]:
    """Devices for ``columns`` columns: 0 and 1 with two or more GPUs, else all on 0."""
    if columns == 2 and xp is backend.cupy_module() and backend.gpu_count() >= 2:
        return (0, 1)
    return (0,) * columns


class Placement:
    """Columns on devices, the exchanges between them, and how parameters split.

    ``shapes``: ``{name: shape}`` of the grouped single-device form. Every parameter of
    conv1-conv5, fc6 and fc7 is split along its first axis (its outputs) into ``columns``
    equal row blocks, block c on column c; fc8 (or the "gap" head's 1x1 convolution)
    lives whole on column 0: the names in ``whole`` (default: those of ``fc8.`` and
    ``head.``). ``workspaces[c]``: where column c's layers and the exchanges into it take
    their large arrays (``layers.workspace``; one per column, so the column threads never
    share one; with ``pooled=False`` every array is made afresh, ``layers.workspace.FRESH``).
    ``parallel``: run the columns in threads on the CPU (default: NumPy, two columns and
    more than one usable core).

    Hybrid parallel: ``ranks=(r, R)`` and ``sharded`` (the fc layers' names) give rank
    r only its part of each column's block of a sharded parameter, the rows
    ``numpy.array_split`` gives it of that block (``rank_block``; uneven splits, a part
    may be empty); ``rows`` then holds this rank's rows, ``blocks`` the columns' whole
    blocks, ``rank_rows`` every rank's rows.
    """

    def __init__(
        self,
        xp: Module,
        columns: int,
        devices: Sequence[int],
        shapes: Mapping[str, tuple[int, ...]],
        *,
        parallel: bool | None = None,
        whole: Collection[str] | None = None,
        pooled: bool = True,
        ranks: tuple[int, int] | None = None,
        sharded: Collection[str] = (),
    ) -> None:
        if columns not in (1, 2):
            raise ValueError(f"columns must be 1 or 2, got {columns!r}")
        devices = tuple(int(d) for d in devices)
        if len(devices) != columns:
            raise ValueError(f"need one device per column ({columns}), got {devices!r}")
        self.xp = xp
        self.columns = columns
        self.devices = devices
        self.shapes = dict(shapes)
        if parallel is None:
            parallel = xp is numpy and columns > 1 and usable_cores() > 1
        # a threadpoolctl.ThreadpoolController, or None: the columns run one after the other
        self.blas: Any = _blas_controller() if parallel else None
        self.parallel = self.blas is not None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.workspaces = [Workspace() if pooled else FRESH for _ in range(columns)]
        rank, size = (0, 1) if ranks is None else ranks
        if not (isinstance(size, int) and isinstance(rank, int) and 0 <= rank < size):
            raise ValueError(f"ranks must be (rank, size) with 0 <= rank < size, got {ranks!r}")
        self.ranks = (rank, size)
        self.sharded = frozenset(sharded) if size > 1 else frozenset()
        unknown = sorted(self.sharded - set(self.shapes))
        if unknown:
            raise ValueError(f"sharded names {unknown} are not parameters")
        # name -> [(column, first row, last row + 1)]: each column's block of rows, and
        # this rank's rows of it (the whole block but for a sharded name)
        self.blocks: dict[str, list[tuple[int, int, int]]] = {}
        self.rows: dict[str, list[tuple[int, int, int]]] = {}
        for name, shape in self.shapes.items():
            on_one = name in whole if whole is not None else name.startswith(("fc8.", "head."))
            if on_one or columns == 1:
                self.blocks[name] = [(0, 0, shape[0])]
            else:
                r = shape[0] // columns
                self.blocks[name] = [(c, c * r, (c + 1) * r) for c in range(columns)]
            self.rows[name] = [
                (c, *rank_block(r0, r1, rank, size)) if name in self.sharded else (c, r0, r1)
                for c, r0, r1 in self.blocks[name]
            ]

    def rank_rows(self, name: str) -> list[list[tuple[int, int]]]:
        """Per column of ``rows[name]``, every rank's (first row, last row + 1) of that
        column's block, in rank order (the block alone when ``name`` is not sharded)."""
        size = self.ranks[1] if name in self.sharded else 1
        return [
            [rank_block(r0, r1, q, size) for q in range(size)] for _, r0, r1 in self.blocks[name]
        ]

    # -- devices -------------------------------------------------------------------
    def device(self, c: int) -> AbstractContextManager[Any]:
        """Context under which column ``c``'s arrays are made and its layers run."""
        return backend.device(self.xp, self.devices[c])

    def each(self, fn: Callable[..., T], *per_column: Sequence[Any]) -> list[T]:
        """``[fn(c, *args_c) ...]`` for every column c that has arguments, each run under
        column c's device: ``per_column`` are lists aligned with the columns (a list of
        one runs column 0 alone, as fc8 does). Concurrent on the CPU (module doc)."""
        args = list(zip(*per_column, strict=True))

        def run_column(c: int) -> T:
            with self.device(c):
                return fn(c, *args[c])

        if not self.parallel:
            return [run_column(c) for c in range(len(args))]
        with self.blas.limit(limits=1, user_api="blas"):  # a column alone too (module doc)
            if len(args) < 2:
                return [run_column(c) for c in range(len(args))]
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=len(args) - 1, thread_name_prefix="refnet-column"
                )
            others = [self._pool.submit(run_column, c) for c in range(1, len(args))]
            try:
                first = run_column(0)  # column 0 in the calling thread
            finally:
                concurrent.futures.wait(others)  # never leave a column running
            return [first] + [f.result() for f in others]

    def new_pass(self) -> None:
        """A pass through the network starts: each workspace plans from the previous one
        (``layers.workspace.Workspace.new_pass``)."""
        for ws in self.workspaces:
            ws.new_pass()

    def close(self) -> None:
        """Stop the column threads (idle ones; ``each`` never leaves one running)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def shared_input(self, per_column: Sequence[Array]) -> bool:
        """True when every column's input is the same array on the same device (conv1's
        image with both columns on one device), so work on it can be shared."""
        return (
            len(per_column) > 1
            and len(set(self.devices)) == 1
            and all(a is per_column[0] for a in per_column)
        )

    def put(self, a: Array, c: int) -> Array:
        """``a`` (host or any device) on column ``c``'s device; no copy when already there."""
        return backend.to_device(a, self.xp, self.devices[c])

    def move(self, a: Array, src: int, dst: int) -> Array:
        """``a``, living on column ``src``'s device, on column ``dst``'s: the transfer
        every exchange uses. Nothing is copied when both columns share a device; otherwise
        a strided view is first made contiguous where its data lives (a CuPy kernel may
        not read another device's memory), then copied across."""
        if self.devices[src] == self.devices[dst]:
            return a
        with self.device(src):
            a = self.xp.ascontiguousarray(a)
        with self.device(dst):
            return self.put(a, dst)

    # -- parameters ----------------------------------------------------------------
    def split(self, name: str, full: numpy.ndarray) -> list[tuple[int, Array]]:
        """Column shards of parameter ``name`` from its full host (NumPy) array: a list
        of (column, array on its device); each shard owns its memory."""
        out = []
        for c, r0, r1 in self.rows[name]:
            shard = numpy.array(full[r0:r1], copy=True)  # (R_c, ...) owning its memory
            with self.device(c):
                out.append((c, self.put(shard, c)))
        return out

    def split_on_device(self, name: str, full: Array) -> list[tuple[int, Array]]:
        """Column shards (views or transfers) of a full array on column 0's device."""
        return [(c, self.move(full[r0:r1], 0, c)) for c, r0, r1 in self.rows[name]]

    def gather(self, name: str, shards: Mapping[int, Array]) -> numpy.ndarray:
        """The full parameter ``name`` as a host NumPy array (a copy) from ``shards``
        (``{column: array}``)."""
        pieces = [backend.asnumpy(shards[c]) for c, _, _ in self.rows[name]]
        if len(pieces) == 1:
            return numpy.array(pieces[0], copy=True)
        return numpy.concatenate(pieces, axis=0)  # (R, ...)

    def gather_on_device(self, name: str, shards: Mapping[int, Array]) -> Array:
        """The full ``name`` as an array of the net's module on column 0's device (the
        shard itself, no copy, when one column owns all of it)."""
        owners = self.rows[name]
        if len(owners) == 1:
            return shards[owners[0][0]]
        pieces = [self.move(shards[c], c, 0) for c, _, _ in owners]
        with self.device(0):
            return self.xp.concatenate(pieces, axis=0)  # (R, ...)


def rank_block(r0: int, r1: int, rank: int, size: int) -> tuple[int, int]:
    """Rank ``rank``'s rows of the rows [r0, r1) split over ``size`` ranks as
    ``numpy.array_split`` splits them (the first (r1 - r0) % size ranks one row more;
    a rank may get none)."""
    n, extra = divmod(r1 - r0, size)
    start = r0 + rank * n + min(rank, extra)
    return start, start + n + (rank < extra)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: a data-parallel rank's
    share, ``refnet.distributed.share_cores``), or the machine's count off Linux."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _blas_controller():
    """A threadpoolctl controller of the loaded BLAS, or ``None`` without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()
