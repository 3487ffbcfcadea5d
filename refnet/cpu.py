"""Process-wide memory settings for training on the CPU: glibc malloc keeps freed buffers.

A training step allocates and frees several GB of large temporaries. By default glibc
returns every block above its mmap threshold (at most 32 MiB) to the kernel when it is
freed, so the next step faults the same memory back in page by page, which makes a
CPU step about twice as slow (docs/performance.md, "Process settings"). A second thread
has its own malloc arena, whose heaps cannot hold blocks over 64 MiB, so with the
threshold raised its large blocks would still be fresh mmaps: one arena for the whole
process fixes that for the column threads.

``tune_malloc`` applies, through ``mallopt``: no mmap below 1 GiB, no trimming of the
heap, one arena. The environment variables ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_ARENA_MAX`` do the same for any process (the
benchmark sets them for both sides). The cost is memory that stays mapped to the process
after it is freed: the peak of a step, not more, since freed blocks are reused.

The network does not need it: each column's workspace (``layers.workspace``) keeps
the step's memory in mappings of its own, so a step runs as fast in a plain process as
with these settings (docs/performance.md, "Process settings"), and neither the library nor its
command-line programs call it. It stays for scripts whose own large temporaries are
re-faulted on every call. Nothing happens off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["tune_malloc"]

# mallopt parameters from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap


def tune_malloc() -> dict[str, bool]:
    """Apply the settings of the module doc; returns ``{setting: accepted}``, or ``{}``
    where glibc's ``mallopt`` is not available (other C libraries, other systems)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return {}
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return {
        "mmap_threshold": bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)),
        "trim_threshold": bool(mallopt(M_TRIM_THRESHOLD, -1)),  # -1: never trim
        "arena_max": bool(mallopt(M_ARENA_MAX, 1)),
    }
