"""The benchmark's process environment: the BLAS it runs on and the malloc settings.

Printed with the results, and set before anything is timed:

- The BLAS library, kernel and threads come from threadpoolctl (``blas_info``). On
  machines that set ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` (older OpenBLAS needed
  them), the bench re-executes itself once with BOTH unset so OpenBLAS picks its native
  kernel, and says so; ``--keep-env`` turns that off. Tests and CI never change them.
- glibc returns large freed buffers to the kernel and re-faults them on every call
  (``refnet.cpu`` explains it); the bench sets ``MALLOC_MMAP_THRESHOLD_`` and
  ``MALLOC_TRIM_THRESHOLD_`` for both sides (in the same re-exec), and
  ``MALLOC_ARENA_MAX=1`` so refnet's second column thread shares that heap. What each
  setting measured is in docs/performance.md.
- ``OPENBLAS_THREAD_TIMEOUT=4`` so idle BLAS threads stop spinning.
- PyTorch gets ``torch.set_num_threads`` equal to the BLAS threads (``blas_threads``).

The environment is read when a process starts, so the settings take effect through one
``os.execve`` of ``python -m refnet.bench`` with the same arguments; ``REEXEC_FLAG`` marks the
second process so it never re-executes again. A Ctrl-C during the exec is held back
until the new process can handle it (``data.cli.run_command``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from refnet.data.cli import interrupts_held

REEXEC_FLAG = "REFNET_BENCH_REEXEC"
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "4294967296",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "MALLOC_ARENA_MAX": "1",
}
# --process: the malloc settings of both sides. "tuned" (default): all three, what
# refnet.cpu.tune_malloc does; "plain": none, a process as a notebook or a script has it;
# "thresholds": the two thresholds without the arena setting, a common tuning recipe.
PROCESSES = {
    "tuned": MALLOC_ENV,
    "plain": {},
    "thresholds": {k: v for k, v in MALLOC_ENV.items() if k != "MALLOC_ARENA_MAX"},
}
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
REPORTED = (*OPENBLAS_OVERRIDES, *MALLOC_ENV, "OPENBLAS_THREAD_TIMEOUT")


def process_env(environ: Mapping[str, str], process: str) -> dict[str, str]:
    """``environ`` with the malloc settings of ``process`` (``PROCESSES``) and no others."""
    env = {k: v for k, v in environ.items() if k not in MALLOC_ENV}
    env.update(PROCESSES[process])
    return env


def reexec_if_needed(argv: Sequence[str], keep_env: bool, process: str = "tuned") -> None:
    """Re-run ``python -m refnet.bench argv`` once with the OpenBLAS overrides unset and the
    malloc settings of ``process``; returns (without re-running) when ``keep_env``, in
    the re-executed process, or when the environment already is so."""
    if keep_env or os.environ.get(REEXEC_FLAG):
        return
    env = process_env(os.environ, process)
    changed = [k for k in OPENBLAS_OVERRIDES if k in env]
    if not changed and env == dict(os.environ) and env.get("OPENBLAS_THREAD_TIMEOUT"):
        return
    for k in changed:
        del env[k]
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    env[REEXEC_FLAG] = "1"
    unset = ", ".join(changed) or "OPENBLAS_CORETYPE/L2_SIZE (not set)"
    # Ctrl-C is held back (SIGINT blocked) across the exec, which keeps the signal mask
    # and pending signals, until the new process's data.cli.run_command handles it.
    with interrupts_held():  # left only when the exec fails
        print(
            f"bench: re-executing with {unset} unset and the {process!r} process "
            f"settings ({', '.join(PROCESSES[process]) or 'no malloc setting'}, both "
            "sides)",
            file=sys.stderr,
            flush=True,
        )
        os.execve(sys.executable, [sys.executable, "-m", "refnet.bench", *argv], env)


def reported_env() -> dict[str, str | None]:
    """{variable: value or None} of every variable this module sets or unsets."""
    return {k: os.environ.get(k) for k in REPORTED}


def blas_info() -> list[dict[str, Any]]:
    """[{internal_api, version, architecture, num_threads, filepath}] of each BLAS loaded,
    from threadpoolctl (empty if it is not installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [
        {
            k: d.get(k)
            for k in ("internal_api", "version", "architecture", "num_threads", "filepath")
        }
        for d in threadpool_info()
        if d.get("user_api") == "blas"
    ]


def blas_threads() -> int:
    """The first BLAS's thread count (the CPU count without threadpoolctl)."""
    info = blas_info()
    return info[0]["num_threads"] if info else (os.cpu_count() or 1)
