"""Benchmark of data parallel training's communication: ``python -m refnet.bench.allreduce``.

Starts ``mpiexec -n RANKS`` on itself (the mpich wheel's, ``pip install -e '.[dist]'``)
and measures, on this machine:

- the allreduce of one flat gradient buffer of the network (alexnet: 60,965,224
  parameters, 244 MB in float32) through ``refnet.distributed`` (MPI on NumPy
  buffers): the median time, the algorithm bandwidth (buffer bytes / time) and the bus
  bandwidth (algorithm bandwidth x 2 (R - 1) / R, what each link carries in a ring);
- with ``--parallel hybrid`` (or ``both``), one hybrid-parallel step by the same
  method: the convolutions on each rank's slice, fc6-fc8 on each rank's share of their
  outputs for the whole batch (``refnet.nodes.RankGather``'s all-gathers and
  reduce-scatters inside forward and backward), the conv gradients' allreduce;
- one data-parallel training step (forward and backward of each rank's slice of the
  global batch, the reduce, SGD) and the fraction of it spent waiting for the reduce
  after the backward pass: "fused", one allreduce of the whole buffer after backward,
  and "overlap", the buckets sent while backward runs (``GradientReducer``'s hook).
  MPI moves a non-blocking allreduce on only inside MPI calls (the hook pokes it after
  each layer) unless the MPI library has a progress thread (MPICH:
  ``MPIR_CVAR_ASYNC_PROGRESS=1``); times are the slowest rank's.

The ranks run in the benchmark's tuned process settings (``bench.env``: glibc malloc
keeps freed buffers, OpenBLAS picks its own kernel). Each rank gets its share of the cores
(``refnet.distributed.share_cores``), as ``python -m refnet.train`` gives it. The figures
and the scaling model they feed are in docs/distributed.md.

Exit status: 0 when measured, 2 for a bad option value or without mpiexec/mpi4py, 130
when interrupted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy

from refnet import NetOptions
from refnet.bench import traffic
from refnet.bench.env import OPENBLAS_OVERRIDES, blas_info, process_env
from refnet.data.cli import USAGE, Parser, int_at_least, positive_int, run_command
from refnet.data.files import write_json
from refnet.layers.backend import Array
from refnet.options import CHOICES

WORKER_FLAG = "--worker"


def build_parser() -> Parser:
    p = Parser(
        prog="python -m refnet.bench.allreduce",
        description=__doc__.split("\n")[0],
        exit_codes={0: "measured", 2: "a bad option value, or no mpiexec/mpi4py"},
    )
    p.add_argument(
        "--ranks", type=int_at_least(2), default=2, help="number of MPI ranks (default 2)"
    )
    p.add_argument(
        "--arch",
        default="alexnet",
        choices=CHOICES["arch"],
        help="whose gradient to reduce (default alexnet)",
    )
    p.add_argument("--dtype", default="float32", choices=CHOICES["dtype"])
    p.add_argument(
        "--batch",
        type=positive_int,
        default=128,
        help="global batch of the timed step (default 128)",
    )
    p.add_argument("--repeats", type=positive_int, default=10, help="timed allreduces (default 10)")
    p.add_argument(
        "--steps",
        type=positive_int,
        default=3,
        help="timed training steps after one warm-up (default 3)",
    )
    p.add_argument(
        "--parallel",
        choices=("data", "hybrid", "both"),
        default="data",
        help="whose training step to time: data parallel (fused and overlapped reduce), "
        "hybrid parallel (convolutions data parallel, fc6-fc8 split over the ranks), or "
        "both (default data)",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument(WORKER_FLAG, action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker(args)
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        print(
            "refnet.bench.allreduce: error: mpiexec not found: pip install -e '.[dist]'",
            file=sys.stderr,
        )
        return USAGE
    cmd = [
        mpiexec,
        "-n",
        str(args.ranks),
        sys.executable,
        "-m",
        "refnet.bench.allreduce",
        *argv,
        WORKER_FLAG,
    ]
    # the benchmark's process settings (bench.env): malloc tuned, OpenBLAS's overrides
    # unset, as python -m refnet.bench measures the one-process step
    env = process_env(os.environ, "tuned")
    for name in OPENBLAS_OVERRIDES:
        env.pop(name, None)
    return subprocess.call(cmd, env=env)


def worker(args: argparse.Namespace) -> int:
    from refnet.distributed import (
        BUCKET_BYTES,
        GradientReducer,
        current_world,
        gradient_reducer,
        share_cores,
    )
    from refnet.network import build_network
    from refnet.sgd import SGD

    world = current_world()
    cores = share_cores(world)
    say = print if world.is_root else (lambda *a, **k: None)
    net = build_network(NetOptions(arch=args.arch, dtype=args.dtype))
    net.init(seed=0)
    reducer = GradientReducer(world, net, bucket_bytes=None)
    nbytes = reducer.size * net.dtype.itemsize
    buf = numpy.random.default_rng(world.rank).standard_normal(reducer.size).astype(net.dtype)
    world.allreduce(buf)  # warm-up: connections, pages
    times = []
    for _ in range(args.repeats):
        world.allreduce(numpy.zeros(1))  # line the ranks up
        t = time.perf_counter()
        world.allreduce(buf)
        times.append(time.perf_counter() - t)
    per_rank = world.allgather(times)
    per_call = [max(ts) for ts in zip(*per_rank, strict=True)]  # the slowest rank's
    t_ar = float(numpy.median(per_call))
    algbw = nbytes / t_ar / 1e9
    busbw = algbw * 2 * (world.size - 1) / world.size
    say(
        f"allreduce of {reducer.size:,} {net.dtype.name} ({nbytes / 1e6:.0f} MB) over "
        f"{world.size} ranks ({cores} core(s) each): median {t_ar * 1e3:.1f} ms "
        f"(min {min(per_call) * 1e3:.1f}, max {max(per_call) * 1e3:.1f}), algorithm "
        f"bandwidth {algbw:.2f} GB/s, bus bandwidth {busbw:.2f} GB/s",
        flush=True,
    )

    share = numpy.array_split(numpy.arange(args.batch), world.size)[world.rank].size
    rng = numpy.random.default_rng(1)
    size = net.spec.input_size
    x = rng.standard_normal((share, 3, size, size)).astype(net.dtype)
    labels = rng.integers(0, net.num_classes, args.batch)  # the global batch's
    mine = numpy.array_split(labels, world.size)[world.rank]
    modes = {"data": ["fused", "overlap"], "hybrid": ["hybrid"]}
    modes["both"] = modes["data"] + modes["hybrid"]
    steps = {}
    for mode in modes[args.parallel]:
        hybrid = mode == "hybrid"
        gathering = [0.0]  # seconds inside the rank gathers' collectives, this step
        if hybrid:  # this rank's share of fc6-fc8; the conv gradients alone reduced
            for name in ("allgatherv", "reduce_scatter"):
                setattr(world, name, _timed(getattr(world, name), gathering))
            net = build_network(NetOptions(arch=args.arch, dtype=args.dtype), ranks=world)
            net.init(seed=0)
            hybrid_reducer = gradient_reducer(world, net)
            # None only in a world of one; main starts the worker on --ranks >= 2
            assert hybrid_reducer is not None
            reducer = hybrid_reducer
        else:
            reducer = GradientReducer(
                world, net, bucket_bytes=None if mode == "fused" else BUCKET_BYTES
            )
        y = labels if hybrid else mine  # hybrid: the loss of the whole batch on every rank
        sgd = SGD(net, lr=0.01, momentum=0.9, weight_decay=5e-4)
        parts: dict[str, list[float]] = {"compute": [], "reduce": [], "sgd": [], "gathers": []}
        for step in range(args.steps + 1):
            world.allreduce(numpy.zeros(1))
            gathering[0] = 0.0
            t0 = time.perf_counter()
            if mode != "fused":
                reducer.begin(share, args.batch)
            loss, grads = net.loss_and_grad_columns(
                x,
                y,
                rng=numpy.random.default_rng(step),
                on_grads=reducer.ready if mode != "fused" else None,
            )
            t1 = time.perf_counter()
            reducer.reduce(grads, loss, share, args.batch)
            t2 = time.perf_counter()
            sgd.step(grads)
            t3 = time.perf_counter()
            if step:  # after the warm-up
                spans = (t1 - t0, t2 - t1, t3 - t2, gathering[0])
                for k, v in zip(parts, spans, strict=True):
                    parts[k].append(max(world.allgather(v)))  # the slowest rank's
        med = {k: float(numpy.median(v)) for k, v in parts.items()}
        total = med["compute"] + med["reduce"] + med["sgd"]  # the gathers: inside compute
        communication = med["reduce"] + med["gathers"]
        steps[mode] = {
            **med,
            "total_s": total,
            "communication_fraction": communication / total,
            "buckets": len(reducer.buckets) + 1,
        }
        what = (
            f"hybrid parallel step (rank gathers in forward and backward, "
            f"{steps[mode]['buckets']} allreduce(s) of the conv gradients)"
            if hybrid
            else f"data parallel step ({mode}: {steps[mode]['buckets']} allreduce(s))"
        )
        gathers = f" (rank gathers {med['gathers']:.3f} of it)" if hybrid else ""
        say(
            f"{what}, {args.arch} global batch {args.batch} ({share} per rank), "
            f"{args.dtype}: {total:.3f} s = forward+backward {med['compute']:.3f}{gathers} + "
            f"reduce after backward {med['reduce']:.3f} + SGD {med['sgd']:.3f}; "
            f"communication {100 * communication / total:.1f}% of the step; "
            f"{args.batch / total:.1f} images/s",
            flush=True,
        )
        say(traffic_line(mode, args, world.size), flush=True)
    blas = blas_info()
    say(
        f"BLAS: {blas[0]['internal_api']} {blas[0]['version']} {blas[0]['architecture']}, "
        f"{blas[0]['num_threads']} thread(s) per rank"
        if blas
        else "BLAS: unknown"
    )
    if args.json and world.is_root:
        write_json(
            args.json,
            {
                "ranks": world.size,
                "cores_per_rank": cores,
                "arch": args.arch,
                "dtype": args.dtype,
                "parameters": reducer.size,
                "bytes": nbytes,
                "allreduce_s": {"median": t_ar, "min": min(per_call), "max": max(per_call)},
                "algbw_GBps": algbw,
                "busbw_GBps": busbw,
                "step": {"global_batch": args.batch, "per_rank": share, **steps},
                "blas": blas,
                "host": os.uname().nodename,
            },
        )
    return 0


def _timed(collective: Callable[..., Array], spent: list[float]) -> Callable[..., Array]:
    """``collective`` that adds the seconds each call takes to ``spent[0]``."""

    def run(*args: Any, **kwargs: Any) -> Array:
        t = time.perf_counter()
        try:
            return collective(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t

    return run


def traffic_line(mode: str, args: argparse.Namespace, ranks: int) -> str:
    """The bytes each rank sends per step under ring collectives, counted from the shapes
    by ``refnet.bench.traffic`` (``mode``: "fused" and "overlap" are data parallel)."""
    scheme = "hybrid" if mode == "hybrid" else "data"
    count = traffic.bytes_per_step(
        arch=args.arch, scheme=scheme, ranks=ranks, batch=args.batch, dtype=args.dtype
    )
    busiest, least = count["max"], count["min"]
    spread = "" if busiest == least else f" (the least busy rank {least / 1e6:,.2f} MB)"
    return (
        f"bytes sent per rank per step ({scheme} parallel, ring collectives, "
        f"python -m refnet.bench.traffic): {busiest / 1e6:,.2f} MB{spread}"
    )


if __name__ == "__main__":
    sys.exit(run_command(main, "refnet.bench.allreduce"))
