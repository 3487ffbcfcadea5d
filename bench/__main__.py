"""``python -m refnet.bench``: refnet's training step against a PyTorch twin, side by side.

Times, interleaved in one process, refnet and PyTorch on the same architecture, batch,
dtype and weights: the whole training step (forward, backward, SGD), forward only, and
each layer (forward and backward apart; PyTorch's as the grouped single-device layer with
its threads, NCHW; ours as the network runs it, each column's share on its own core in
the network's layout, batch innermost by default). Reports the median and min/max over
the timed repeats (after warm-up), images/s, the ratio refnet/PyTorch (> 1 means refnet
is faster), the effective GFLOP/s against this machine's GEMM peak (measured here), and
the peak resident memory of each side's training step (each measured in a fresh
subprocess).

Before timing, the bench re-executes itself once with its environment settings (the
BLAS kernel and glibc malloc; ``bench.env`` says which and why) and prints them with the
results. Without torch installed it still runs and reports refnet alone. On a GPU
(``--device gpu``) PyTorch runs with cuDNN on the same card; ``--tf32`` allows TF32 on
both sides (CuPy's ``CUPY_TF32=1`` and PyTorch's matmul/cuDNN flags).

Exit status: 0 when measured, 2 for a bad option value (or ``--device gpu`` without a
GPU), 130 when interrupted (Ctrl-C; in the re-executed process too, and nothing is
written then).

Modules: ``bench.env`` (environment, BLAS), ``bench.sides`` (the two networks),
``bench.timing``, ``bench.flops``, ``bench.layers`` (per-layer cases), ``bench.memory``
(peak RSS probes), ``bench.report`` (text and JSON).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy

from refnet import NetOptions
from refnet.bench.env import PROCESSES, blas_info, blas_threads, reexec_if_needed, reported_env
from refnet.bench.flops import step_flops, winograd_step_flops
from refnet.bench.layers import handoff_seconds, time_layers
from refnet.bench.memory import SIDES, peak_memory, run_probe
from refnet.bench.report import report
from refnet.bench.sides import RefnetSide, TorchSide, load_torch
from refnet.bench.timing import SETTLE_S, gemm_peak, interleave
from refnet.data.cli import (
    Parser,
    UserError,
    exit_status,
    nonnegative_int,
    positive_int,
    run_command,
)
from refnet.data.files import write_json
from refnet.options import CHOICES, CONV_CACHE_ALIASES, DEVICES, backend_for_device

PARTS = ("step", "forward", "layers", "memory")
BENCH_DEVICES = tuple(d for d in DEVICES if d != "auto")  # the results name the device


EXIT_CODES = {
    0: "measured (and the JSON written when asked)",
    2: "a bad option value (one line names it), or --device gpu without one",
}


def build_parser() -> Parser:
    p = Parser(
        prog="python -m refnet.bench", description=__doc__.split("\n")[0], exit_codes=EXIT_CODES
    )
    p.add_argument(
        "--arch", default="alexnet", choices=CHOICES["arch"], help="architecture (default alexnet)"
    )
    p.add_argument("--batch", type=positive_int, default=128, help="batch size (default 128)")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=CHOICES["dtype"],
        help="dtype of both sides (default float32)",
    )
    p.add_argument(
        "--device", default="cpu", choices=BENCH_DEVICES, help="where both sides run (default cpu)"
    )
    p.add_argument("--repeats", type=positive_int, default=5, help="timed repeats (default 5)")
    p.add_argument(
        "--warmup",
        type=nonnegative_int,
        default=2,
        help="untimed warm-up runs (default 2: refnet's workspace records the "
        "first step and maps its arena in the second)",
    )
    p.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)} (default all)"
    )
    p.add_argument(
        "--no-torch",
        action="store_true",
        help="time refnet alone (default: PyTorch's side too, when installed)",
    )
    p.add_argument(
        "--conv-cache",
        default="unfolded",
        choices=CHOICES["conv_cache"],
        type=lambda v: CONV_CACHE_ALIASES.get(v, v),
        help="what refnet's convs keep for backward (NetOptions.conv_cache; default unfolded)",
    )
    p.add_argument(
        "--conv-algo",
        default="winograd",
        choices=CHOICES["conv_algo"],
        help="refnet's stride-1 convolutions (NetOptions.conv_algo; default winograd)",
    )
    p.add_argument(
        "--engine",
        default="fast",
        choices=CHOICES["engine"],
        help="refnet's engine (NetOptions.engine; default fast)",
    )
    p.add_argument(
        "--layers-as",
        default="network",
        choices=("network", "grouped"),
        help="per-layer rows: our layers as the network runs them (each "
        "column's share, concurrently) or as one grouped call "
        "(default network)",
    )
    p.add_argument(
        "--tf32", action="store_true", help="GPU: allow TF32 on both sides (default: full float32)"
    )
    p.add_argument(
        "--json", metavar="PATH", help="write the results as JSON to PATH (default: printed only)"
    )
    p.add_argument(
        "--process",
        choices=tuple(PROCESSES),
        default="tuned",
        help="malloc settings of both sides: tuned (refnet.cpu.tune_malloc's), "
        "plain (none, as a notebook or a script has it) or thresholds "
        "(mmap/trim thresholds without one arena) (default tuned)",
    )
    p.add_argument(
        "--settle-ms",
        type=nonnegative_int,
        default=round(SETTLE_S * 1000),
        help="milliseconds of busy wait before each timed run, so the other "
        "side's idle threads stop spinning (bench.timing; 0: none; "
        f"default {round(SETTLE_S * 1000)})",
    )
    p.add_argument(
        "--keep-env",
        action="store_true",
        help="do not re-execute with the OpenBLAS overrides unset (default: "
        "re-execute once, see bench.env)",
    )
    p.add_argument("--memory-probe", choices=SIDES, help=argparse.SUPPRESS)
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    args.parts = set(args.parts.split(","))
    bad = args.parts - set(PARTS)
    if bad:
        p.error(f"unknown --parts {sorted(bad)}")
    if args.arch == "owt" and not args.no_torch:
        p.error(
            "--arch owt: the PyTorch twin mirrors the paper's network, not "
            "torchvision's; add --no-torch to time refnet alone"
        )
    return args


def net_options(args: argparse.Namespace) -> NetOptions:
    """The ``NetOptions`` of refnet's network for the parsed ``args`` (the library's
    defaults for every option the bench has no flag for)."""
    try:
        backend = backend_for_device(args.device)
    except ValueError as e:
        raise UserError(str(e)) from None
    return NetOptions(
        arch=args.arch,
        dtype=args.dtype,
        backend=backend,
        conv_cache=args.conv_cache,
        conv_algo=args.conv_algo,
        engine=args.engine,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The results dict of the parts ``args`` asks for (``bench.report`` lists its keys)."""
    if args.tf32:
        os.environ["CUPY_TF32"] = "1"  # before anything imports CuPy
    options = net_options(args)
    torch = None if args.no_torch else load_torch()
    threads = blas_threads()
    results = {
        "arch": args.arch,
        "batch": args.batch,
        "dtype": args.dtype,
        "conv_cache": args.conv_cache,
        "conv_algo": args.conv_algo,
        "device": args.device,
        "blas": blas_info(),
        "threads": threads,
        "env": reported_env(),
        "process": args.process,
        "settle_s": args.settle_ms / 1000,
        "torch": None if torch is None else torch.__version__,
    }
    if "memory" in args.parts and args.device == "cpu":
        # first, while this process holds no network: each probe is a fresh process
        results["memory"] = {"refnet": peak_memory(args, "refnet")}
        if torch is not None:
            results["memory"]["torch"] = peak_memory(args, "torch")
    ours = RefnetSide(options, args.batch)
    theirs = None
    if torch is not None:
        torch.set_num_threads(threads)
        if args.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        theirs = TorchSide(torch, ours)
        if args.device == "gpu":
            results["gpu"] = torch.cuda.get_device_name(0)
    fwd_flops, step_fl = step_flops(ours.net)
    peak = gemm_peak(ours.xp, numpy.dtype(args.dtype), ours.sync)
    results["gemm_peak_gflops"] = peak
    results["flops_per_image"] = {"forward": fwd_flops, "step": step_fl}
    if args.conv_algo == "winograd":  # the products Winograd leaves (bench.flops)
        results["flops_per_image"]["step_winograd_products"] = winograd_step_flops(
            ours.net.spec.name, args.dtype, ours.net.columns
        )

    def sync() -> None:
        ours.sync()
        if theirs is not None:
            theirs.sync()

    for part, flops in (("step", step_fl), ("forward", fwd_flops)):
        if part not in args.parts:
            continue
        cases = {"refnet": getattr(ours, part)}
        if theirs is not None:
            cases["torch"] = getattr(theirs, part)
        res: dict[str, Any] = interleave(
            cases, args.repeats, args.warmup, sync, part, pause=args.settle_ms / 1000
        )
        for side in res.values():
            side["images_per_s"] = args.batch / side["median_s"]
            side["gflops"] = flops * args.batch / side["median_s"] / 1e9
            side["fraction_of_gemm_peak"] = side["gflops"] / peak
        if "torch" in res:
            res["speedup_vs_torch"] = res["torch"]["median_s"] / res["refnet"]["median_s"]
        bound = results["flops_per_image"].get(f"{part}_winograd_products")
        if bound:  # the least time the step's products take at the GEMM peak
            res["refnet"]["over_arithmetic_bound"] = res["refnet"]["median_s"] / (
                bound * args.batch / (peak * 1e9)
            )
        results[part] = res
    if "layers" in args.parts:
        results["layers"] = time_layers(
            ours,
            theirs,
            args.batch,
            max(1, args.repeats // 2),
            args.warmup,
            args.layers_as,
            pause=args.settle_ms / 1000,
        )
        results["layers_as"] = args.layers_as
        if args.layers_as == "network":
            results["handoff_s"] = handoff_seconds(ours.net)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)

    def body() -> None:
        if args.memory_probe:
            return run_probe(args.memory_probe, net_options(args), args.batch)
        reexec_if_needed(argv, args.keep_env, args.process)
        results = run(args)
        print(report(results))
        if args.json:
            write_json(args.json, results)
            print(f"results written to {args.json}")

    return exit_status("refnet.bench", body)


if __name__ == "__main__":
    sys.exit(run_command(main, "refnet.bench"))
