"""Peak resident memory of each side's training step, each in a fresh process.

``peak_memory`` runs ``python -m refnet.bench --memory-probe SIDE ...`` with the bench's own
options; that process (``run_probe``) builds the side, returns the heap that set-up freed
to the kernel, restarts the kernel's peak count, runs two training steps and prints one
JSON line, {peak_rss_bytes, rss_before_steps_bytes, peak_reset}. A fresh process per side
keeps the other side's libraries and buffers out of the figure. Linux only: elsewhere
the figures are None.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from refnet.bench.env import blas_threads
from refnet.bench.sides import RefnetSide, TorchSide, load_torch
from refnet.options import NetOptions

SIDES = ("refnet", "torch")


def peak_memory(args: argparse.Namespace, side: str) -> dict[str, Any] | None:
    """The probe's JSON result for ``side`` ("refnet" or "torch") under the bench's
    parsed ``args``, or None if the probe process failed."""
    cmd = [
        sys.executable,
        "-m",
        "refnet.bench",
        "--memory-probe",
        side,
        "--arch",
        args.arch,
        "--batch",
        str(args.batch),
        "--dtype",
        args.dtype,
        "--device",
        args.device,
        "--conv-cache",
        args.conv_cache,
        "--conv-algo",
        args.conv_algo,
        "--keep-env",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_rss() -> int | None:
    """This process's peak resident set in bytes (VmHWM from /proc; ``None`` elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Return freed heap memory to the kernel and restart the peak count from the current
    resident set (Linux: ``malloc_trim`` and /proc/self/clear_refs); False if impossible."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def run_probe(side: str, options: NetOptions, batch: int) -> None:
    """The probe process: build ``side`` ("refnet" or "torch") for the network
    ``options`` (a ``NetOptions``) at ``batch``, drop what only set-up needed, then print
    the peak resident set over two training steps (the model, its libraries and the
    step's working memory) as one JSON line."""
    measured: RefnetSide | TorchSide
    measured = RefnetSide(options, batch)
    if side == "torch":
        torch = load_torch()
        assert torch is not None, "the torch probe runs only where torch imports"
        torch.set_num_threads(blas_threads())
        measured = TorchSide(torch, measured)  # the refnet side is freed here
    reset = reset_peak_rss()
    before = peak_rss()
    for _ in range(2):
        measured.step()
    print(
        json.dumps(
            {"peak_rss_bytes": peak_rss(), "rss_before_steps_bytes": before, "peak_reset": reset}
        )
    )
