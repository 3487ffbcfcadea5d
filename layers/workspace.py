"""Where the layers' large arrays come from: made afresh, or from memory a workspace keeps.

    y = ws.empty(xp, shape, dtype); ws.zeros(xp, shape, dtype); ws.copy(xp, a)
    xp.matmul(a, b, out=y)                        # layers write into what ws hands out
    ws.new_pass()                                 # a pass (step, evaluation) ends

Every layer that makes large arrays takes ``ws=`` (default ``FRESH``) and asks it, never
``xp``, for them, then writes into them with ``out=``. One code path for every module:

- ``FRESH`` makes every array anew (``xp.empty``): a layer called on its own.
- ``Workspace`` serves NumPy arrays of at least ``MIN_BYTES`` from memory it keeps, so
  a training step does not fault its arrays back in every time (docs/performance.md,
  "Process settings", "Memory"); smaller ones, and every array of another module, come
  from ``xp`` (CuPy's memory pool keeps freed device memory).

A piece of kept memory is free exactly when the array handed out over it is gone (a weak
reference; that array is the ``base`` of every view of it), so nothing anybody still
holds is written by a later request. The memory is anonymous mappings (``mmap``), never
the C library's heap: what a workspace lets go goes back to the system at once.

Plans: requests of at least ``PLAN_BYTES`` are recorded with their lifetimes (in request
counts); ``new_pass`` turns the pass's record into offsets in one arena (largest first,
each at the lowest offset free for its lifetime), handed out again to later passes that
ask for the same sizes once no live piece overlaps; a few plans are kept. Before the
first plan and off every plan a request gets a mapping of its own, let go with its
array. Smaller requests, pieces a live array still covers, and arrays that outlived
their pass come from kept buffers (``_Pool``): the smallest free one of at least the
request and at most ``FIT`` times it; one unused for ``KEEP_PASSES`` passes is let go.
"""

from __future__ import annotations

import mmap
import threading
import weakref
from typing import Any

import numpy

from refnet.layers.backend import Array, DTypeLike, Module

__all__ = [
    "FRESH",
    "Fresh",
    "Workspace",
    "MIN_BYTES",
    "PLAN_BYTES",
    "FIT",
    "GRAIN",
    "KEEP_PASSES",
    "MAX_PLANS",
]

MIN_BYTES = 1 << 20  # smaller arrays come from xp (malloc's heap keeps those)
PLAN_BYTES = 4 << 20  # requests planned in the arena; smaller ones from the pool
FIT = 2.0  # a pool buffer serves requests down to 1/FIT of its size
GRAIN = 1 << 12  # sizes and offsets rounded up to pages (4 KiB)
KEEP_PASSES = 2  # a pool buffer unused for this many passes is let go
MAX_PLANS = 4  # plans kept, the most recently used first


class Fresh:
    """Every array made anew by its module."""

    def empty(self, xp: Module, shape: int | tuple[int, ...], dtype: DTypeLike) -> Array:
        """An uninitialised array of ``xp``."""
        return xp.empty(shape, dtype=dtype)

    def zeros(self, xp: Module, shape: int | tuple[int, ...], dtype: DTypeLike) -> Array:
        """An array of ``xp`` filled with zeros."""
        out = self.empty(xp, shape, dtype)
        out.fill(0)
        return out

    def copy(self, xp: Module, a: Array) -> Array:
        """A C-contiguous copy of ``a``."""
        out = self.empty(xp, a.shape, a.dtype)
        out[...] = a
        return out

    def new_pass(self) -> None:
        """A pass through the network starts (nothing to do: nothing is kept)."""


FRESH = Fresh()


class Workspace(Fresh):
    """Memory kept for one network column's large NumPy arrays (module doc).
    ``held_bytes``: the memory it keeps; ``clear()`` lets all of it go."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = _Pool()
        self._arena: memoryview | None = None  # a memoryview of the arena's mapping, or None
        self._plans: list[
            tuple[tuple[int, ...], tuple[int | None, ...]]
        ] = []  # [sizes, offsets] (offset None: from the pool), newest first
        self._matching: list[
            tuple[tuple[int, ...], tuple[int | None, ...]]
        ] = []  # the plans this pass has followed so far
        self._trace: list[list[Any]] = []  # this pass's planned-size requests: [size, first, last]
        self._live: list[
            list[Any]
        ] = []  # [weak ref, trace index, offset, size] of pieces handed out
        self._strayed = False  # this pass left its plan (a piece still covered, ...)
        self._pass = 0

    def empty(self, xp: Module, shape: int | tuple[int, ...], dtype: DTypeLike) -> Array:
        dtype = numpy.dtype(dtype)
        shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        nbytes = dtype.itemsize
        for s in shape:
            nbytes *= s
        if xp is not numpy or nbytes < MIN_BYTES:
            return xp.empty(shape, dtype=dtype)
        size = -(-nbytes // GRAIN) * GRAIN
        with self._lock:
            if size >= PLAN_BYTES:
                piece = self._planned(size)
            elif self._plans:
                piece = self._pool.take(size)
            else:  # nothing kept before the first plan
                piece = numpy.frombuffer(_mapped(size), numpy.uint8)
        return piece[:nbytes].view(dtype).reshape(shape)

    def _planned(self, size: int) -> numpy.ndarray:
        """A piece of ``size`` bytes for the next request of this pass (module doc)."""
        j = len(self._trace)
        self._note_deaths(j)
        self._matching = [p for p in self._matching if j < len(p[0]) and p[0][j] == size]
        if not self._matching:  # off every plan: its own mapping
            piece, offset = numpy.frombuffer(_mapped(size), numpy.uint8), None
        else:
            offset = self._matching[0][1][j]
            if offset is not None and (
                offset + size > len(self._arena)  # type: ignore[arg-type]  # a plan has its arena
                or any(
                    o is not None and o < offset + size and offset < o + n
                    for _, _, o, n in self._live
                )
            ):
                offset, self._strayed = None, True  # a live piece still covers it
            if offset is None:  # or it outlived its pass last time
                piece = self._pool.take(size)
            else:
                arena = self._arena[offset : offset + size]  # type: ignore[index]  # as above
                piece = numpy.frombuffer(arena, numpy.uint8)
        self._live.append([weakref.ref(piece), j, offset, size])
        self._trace.append([size, j, None])
        return piece

    def _note_deaths(self, j: int) -> None:
        """Pieces whose arrays are gone end their lifetime at request ``j``."""
        live = []
        for entry in self._live:
            if entry[0]() is not None:
                live.append(entry)
            elif entry[1] is not None:
                self._trace[entry[1]][2] = j
        self._live = live

    def new_pass(self) -> None:
        """The previous pass's record becomes a plan unless it followed one; a new pass
        starts; pool buffers unused for ``KEEP_PASSES`` passes are let go."""
        with self._lock:
            self._note_deaths(len(self._trace))
            sizes = tuple(size for size, _, _ in self._trace)
            followed = [p for p in self._plans if p[0] == sizes]
            outlived = {i for _, i, o, _ in self._live if o is not None}
            if self._strayed or outlived:  # the plan no longer fits the pass
                self._plans = [p for p in self._plans if p[0] != sizes]
                followed = []
            if sizes and not followed:
                followed = [(sizes, _offsets(self._trace))]
                need = max(
                    (o + n for o, n in zip(followed[0][1], sizes, strict=True) if o is not None),
                    default=0,
                )
                if self._arena is None or need > len(self._arena):
                    self._arena = _mapped(need)  # pieces of the old arena keep it alive
                    self._live = []  # and no longer overlap anything
                self._pool.drop_free()  # what served it before is not needed
            self._plans = (followed + [p for p in self._plans if p not in followed])[:MAX_PLANS]
            self._matching = list(self._plans)
            self._trace, self._strayed = [], False
            # arrays that outlived their pass: their pieces stay out of circulation
            self._live = [[ref, None, o, n] for ref, _, o, n in self._live if o is not None]
            self._pass += 1
            self._pool.new_pass(self._pass)

    def clear(self) -> None:
        """Let all kept memory go (arrays still in use keep theirs alive)."""
        with self._lock:
            self._arena, self._plans, self._matching = None, [], []
            self._trace, self._live = [], []
            self._pool = _Pool()

    @property
    def held_bytes(self) -> int:
        """Bytes kept: the arena and the pool's buffers."""
        return (0 if self._arena is None else len(self._arena)) + self._pool.held_bytes


class _Pool:
    """Kept buffers handed out whole: [buffer, the last pass that used it, weak ref of
    the array handed out]."""

    def __init__(self) -> None:
        self.buffers: list[list[Any]] = []
        self.now = 0

    def take(self, size: int) -> numpy.ndarray:
        best = None
        for entry in self.buffers:
            n = len(entry[0])
            if (
                size <= n <= FIT * size
                and (entry[2] is None or entry[2]() is None)
                and (best is None or n < len(best[0]))
            ):
                best = entry
        if best is None:
            best = [_mapped(size), 0, None]
            self.buffers.append(best)
        piece = numpy.frombuffer(best[0], numpy.uint8)
        best[1], best[2] = self.now, weakref.ref(piece)
        return piece

    def new_pass(self, now: int) -> None:
        self.now = now
        for entry in self.buffers:
            if entry[2] is not None and entry[2]() is not None:
                entry[1] = now - 1  # in use: counts as used
        self.buffers = [e for e in self.buffers if now - e[1] <= KEEP_PASSES]

    def drop_free(self) -> None:
        self.buffers = [e for e in self.buffers if e[2] is not None and e[2]() is not None]

    @property
    def held_bytes(self) -> int:
        return sum(len(e[0]) for e in self.buffers)


def _mapped(nbytes: int) -> memoryview:
    """A memoryview of ``nbytes`` of fresh memory mapped for it alone (an anonymous
    ``mmap``: page-aligned, zero-filled on first touch, given back to the system as soon
    as the last array over it is gone, whatever the C library's malloc settings),
    with transparent huge pages asked for where the system has them, as NumPy does for
    its own large arrays."""
    if hasattr(mmap, "MAP_PRIVATE"):  # POSIX: private, not shared memory
        m = mmap.mmap(-1, max(1, nbytes), flags=mmap.MAP_PRIVATE)
    else:
        m = mmap.mmap(-1, max(1, nbytes))
    if hasattr(m, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            m.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass
    return memoryview(m)


def _offsets(trace: list[list[Any]]) -> tuple[int | None, ...]:
    """Arena offsets for a pass's requests ``[size, first, last]`` (last None: it outlived
    the pass, so it gets None, the pool): largest first, each at the lowest offset where
    no placed request with an overlapping lifetime lies."""
    placed: list[tuple[int, int, int, int]] = []
    out: list[int | None] = [None] * len(trace)  # placed: (first, last, offset, end)
    for i in sorted(range(len(trace)), key=lambda i: -trace[i][0]):
        size, first, last = trace[i]
        if last is None:
            continue
        busy = sorted((o, e) for f, la, o, e in placed if f < last and first < la)
        offset = 0
        for o, e in busy:
            if o - offset >= size:
                break
            offset = max(offset, e)
        placed.append((first, last, offset, offset + size))
        out[i] = offset
    return tuple(out)
