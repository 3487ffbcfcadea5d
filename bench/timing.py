"""Wall-clock timing: one call, rounds of several callables interleaved, the GEMM peak.

Every time is taken between two calls of the side's ``sync`` (a no-op on the CPU, a
device synchronisation on a GPU), so queued GPU work is counted where it was issued.

Between interleaved runs the machine settles for ``SETTLE_S``: PyTorch's OpenMP threads
keep spinning for about 5-10 ms after its last parallel region (GNU OpenMP's default
wait policy), so a case timed right after PyTorch's runs with one of two cores taken
(measured on the demo network: refnet's step 36 ms alone or 10-20 ms after PyTorch's,
42-50 ms right after it; PyTorch's own step is the same either way). The pause is a
busy wait, not a sleep: on the virtual machines measured, a core left idle for a few
ms comes back slower (docs/performance.md).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import numpy
from numpy.typing import DTypeLike

from refnet.data.progress import Progress
from refnet.layers.backend import Module


def timed(fn: Callable[[], object], sync: Callable[[], object]) -> float:
    """Seconds that ``fn()`` takes, from a synchronised start to a synchronised end."""
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def summary(times: list[float]) -> dict[str, float]:
    """{median_s, min_s, max_s, runs} of a list of seconds."""
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs": len(times),
    }


SETTLE_S = 0.02


def settle(seconds: float = SETTLE_S) -> None:
    """Busy-wait ``seconds`` (module doc)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def interleave(
    cases: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int,
    sync: Callable[[], object],
    desc: str,
    pause: float = SETTLE_S,
) -> dict[str, dict[str, float]]:
    """{name: summary} of the callables ``cases`` ({name: fn}): each run ``warmup`` times
    untimed, then ``repeats`` rounds in which each runs once, in turn, so a change in the
    machine's speed during the run touches every case alike; ``pause`` seconds of
    ``settle`` before each timed run."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {name: [] for name in cases}
    bar = Progress(total=repeats * len(cases), desc=desc, unit="run")
    for _ in range(repeats):
        for name, fn in cases.items():
            settle(pause)
            out[name].append(timed(fn, sync))
            bar.update(1)
    bar.close()
    return {name: summary(t) for name, t in out.items()}


def gemm_peak(
    xp: Module, dtype: DTypeLike, sync: Callable[[], object], n: int = 2048, repeats: int = 10
) -> float:
    """GFLOP/s of an n x n x n GEMM in ``dtype`` on ``xp``: the fastest of ``repeats``.
    A peak rather than a median, because a high peak is the conservative reference for
    the fraction-of-peak figures (docs/performance.md: how much the median moves)."""
    rng = numpy.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((n, n)).astype(dtype))
    b = xp.asarray(rng.standard_normal((n, n)).astype(dtype))
    xp.matmul(a, b)
    times = [timed(lambda: xp.matmul(a, b), sync) for _ in range(repeats)]
    return 2 * n**3 / min(times) / 1e9
