"""Where the layers' large arrays come from: made afresh, or handed out again by a workspace.

A training step makes and drops the same large arrays every time (activations, caches,
im2col columns and Winograd tiles, gradients). A process's C library returns large
freed blocks to the kernel (glibc: blocks over 32 MiB, a second thread's heap however
small), and the next step faults them back in page by page: in a plain process a third
or more of a CPU step (docs/performance.md). A ``Workspace`` keeps those buffers and
hands them out again, so from the second step on the memory is already there, without
changing any process-wide setting.

Every layer that makes large arrays takes ``ws=`` (default ``FRESH``) and asks it, never
``xp``, for them: ``ws.empty(xp, shape, dtype)`` / ``ws.zeros(...)``, then writes into
them with ``out=``. One code path for every array module:

- ``FRESH`` makes every array anew (``xp.empty``): a layer called on its own.
- ``Workspace`` keeps NumPy buffers of at least ``min_bytes`` (smaller ones, and every
  array of another module, come from ``xp``: on CuPy its memory pool already keeps
  freed device memory for the next request).

When a buffer is free. A kept buffer is a 1-D uint8 array owning its memory; what a
layer gets is a view of it, and every view of a view names the owner as its ``base``
(NumPy collapses chains of views), so the owner's reference count is the kept reference
plus one per live view. A buffer is handed out again only when that count is back to
the kept reference alone: no array anybody still holds (a layer's cache, a gradient the
caller kept, logits, a view made of either) can be written by a later request. Whatever
a caller keeps stays valid; it only keeps its buffer out of circulation.

Which buffer. The smallest free one of at least the request and at most ``FIT`` times
it; else a new one of the request rounded up to ``GRAIN``. A step asks for the same
sizes in the same order every time, so after the first step or two every request finds
its buffer. ``trim()`` marks the start of a pass (the network calls it once per pass)
and drops the free buffers that the last ``KEEP_PASSES`` passes neither used nor saw in
use: memory held is what the recent passes needed (a caller that keeps one step's
gradients while the next step runs needs two sets of them, and keeps both). Each
network column has its own workspace; the lock only guards against misuse.
"""
import sys
import threading

import numpy

__all__ = ["FRESH", "Fresh", "Workspace", "MIN_BYTES", "FIT", "GRAIN", "KEEP_PASSES"]

MIN_BYTES = 1 << 20     # smaller arrays come from malloc's heap, which keeps them
FIT = 2.0               # a free buffer serves requests down to 1/FIT of its size
GRAIN = 1 << 16         # new buffers: the request rounded up to 64 KiB
KEEP_PASSES = 2         # a free buffer unused for this many passes is let go


class Fresh:
    """Every array made anew by its module: ``xp.empty`` / ``xp.zeros``."""

    def empty(self, xp, shape, dtype):
        """An uninitialised array of ``xp``."""
        return xp.empty(shape, dtype=dtype)

    def zeros(self, xp, shape, dtype):
        """An array of ``xp`` filled with zeros."""
        return xp.zeros(shape, dtype=dtype)

    def copy(self, xp, a):
        """A C-contiguous copy of ``a`` from this source."""
        out = self.empty(xp, a.shape, a.dtype)
        out[...] = a
        return out

    def trim(self):
        """Nothing is kept."""


FRESH = Fresh()


class Workspace(Fresh):
    """Large NumPy buffers kept and handed out again once nothing refers to them (module
    doc). ``held_bytes`` is the memory it keeps; ``clear()`` lets it all go."""

    def __init__(self, min_bytes=MIN_BYTES):
        self.min_bytes = int(min_bytes)
        self._buffers = []          # [owner array, the last pass that used it]
        self._pass = 0
        self._lock = threading.Lock()
        probe = [numpy.empty(1, numpy.uint8), 0]
        self._free_refs = _refs([probe])   # the count of an owner nobody else refers to

    def empty(self, xp, shape, dtype):
        dtype = numpy.dtype(dtype)
        shape = tuple(int(s) for s in shape) if not isinstance(shape, int) else (shape,)
        nbytes = dtype.itemsize
        for s in shape:
            nbytes *= s
        if xp is not numpy or nbytes < self.min_bytes:
            return xp.empty(shape, dtype=dtype)
        with self._lock:
            owner = self._take(nbytes)
        return owner[:nbytes].view(dtype).reshape(shape)

    def zeros(self, xp, shape, dtype):
        out = self.empty(xp, shape, dtype)
        out.fill(0)
        return out

    def _take(self, nbytes):
        best = None
        for entry in self._buffers:
            size = entry[0].nbytes
            if nbytes <= size <= FIT * nbytes and (best is None or size < best[0].nbytes) \
                    and _refs([entry]) == self._free_refs:
                best = entry
        if best is None:
            best = [numpy.empty(-(-nbytes // GRAIN) * GRAIN, numpy.uint8), 0]
            self._buffers.append(best)
        best[1] = self._pass
        return best[0]

    def trim(self):
        """A new pass: drop the free buffers unused for ``KEEP_PASSES`` passes."""
        with self._lock:
            self._pass += 1
            kept = []
            for entry in self._buffers:
                if _refs([entry]) != self._free_refs:
                    entry[1] = self._pass - 1            # in use: counts as used
                if self._pass - entry[1] <= KEEP_PASSES:
                    kept.append(entry)
            self._buffers = kept

    def clear(self):
        """Let every buffer go (those still in use live on with their views)."""
        with self._lock:
            self._buffers = []

    @property
    def held_bytes(self):
        """Bytes of all kept buffers."""
        return sum(entry[0].nbytes for entry in self._buffers)


def _refs(entries):
    """The reference count of the owner array of ``entries[0]``, counted the same way
    for the probe and for every kept buffer (so the constant parts cancel)."""
    return sys.getrefcount(entries[0][0])
