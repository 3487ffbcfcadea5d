"""``python -m refnet.verify``: refnet's numbers against PyTorch's (or other frameworks'), as a
table (and JSON).

    python -m refnet.verify                          # everything, float64, both network sizes
    python -m refnet.verify --dtype float32          # float32 on both sides, float32 tolerances
    python -m refnet.verify --only layers,sgd        # some parts: layers, network, sgd,
                                                     # conventions, reference (fast paths
                                                     # vs layers.reference)
    python -m refnet.verify --size small --json out.json
    python -m refnet.verify --json -                 # JSON on stdout, the table on stderr
    python -m refnet.verify --against jax            # the same cases against JAX's autodiff
    python -m refnet.verify --against torch,onnxruntime,jax   # one table, a column each

One framework prints every comparison; several print one table with a row per layer and
direction and a column per framework (``verify.framework_table``), then any failing
rows. The frameworks are ``verify.frameworks``' entries; one that is not installed is
shown as skipped, with the reason.

Exit status: 0 when every judged row passes, 1 when any fails, 2 for a usage error or
when no framework asked for is installed (PyTorch: pip install -e '.[verify]'), 130 when
interrupted (Ctrl-C). The error measure and the tolerances are documented in
``verify.compare``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import IO

import numpy

from refnet.data.cli import Parser, UserError, exit_status, nonnegative_int, run_command
from refnet.verify import frameworks
from refnet.verify.against_torch import PARTS
from refnet.verify.compare import Row
from refnet.verify.frameworks import Framework

SIZES = {"small": ("small",), "paper": ("paper",), "both": ("small", "paper")}
EXIT_CODES = {
    0: "every judged row passes",
    1: "some row fails (the table says which)",
    2: "a bad option value, or PyTorch is not installed (pip install -e "
    "'.[verify]'), or none of the --against frameworks is",
}


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m refnet.verify",
        exit_codes=EXIT_CODES,
        description="Compare refnet's layers, network and SGD with PyTorch twins (or "
        "other frameworks': --against), and its fast paths with "
        "layers.reference.",
    )
    parser.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="dtype of both sides (default float64)",
    )
    parser.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed of every random draw (default 0)"
    )
    parser.add_argument(
        "--against",
        default=",".join(frameworks.DEFAULT),
        help="comma-separated frameworks to compare with, from "
        f"{','.join(frameworks.MODULES)}; several give one table "
        "with a column each (default torch)",
    )
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, from {','.join(PARTS)} "
        "(torch's; jax runs layers and network; default all)",
    )
    parser.add_argument(
        "--size",
        choices=tuple(SIZES),
        default="both",
        help="network sizes: small (tiny and demo archs), paper "
        "(alexnet at 227, batch 2), or both (default both)",
    )
    parser.add_argument(
        "--engine",
        choices=("fast", "plain"),
        default="fast",
        help="refnet's engine for the network and SGD parts (NetOptions.engine; default fast)",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="also write the report as JSON to PATH ('-' for stdout, "
        "then the table goes to stderr; default: the table only)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (default: a progress bar on stderr)"
    )
    return parser


def parse_parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(
            f"--only: unknown part(s) {unknown or text!r}, choose from {','.join(PARTS)}"
        )
    return [p for p in PARTS if p in parts]


def print_report(
    stream: IO[str],
    modules: dict[str, Framework],
    results: dict[str, list[Row]],
    args: argparse.Namespace,
    parts: Sequence[str],
    elapsed: float,
) -> None:
    """One framework: every row (``format_table``); several: one table, then the failures."""
    from refnet.verify.compare import format_table
    from refnet.verify.framework_table import format_framework_table

    skipped = {n: m.available() for n, m in modules.items() if n not in results}
    settings = f"dtype {args.dtype}, seed {args.seed}, parts {{}}, {elapsed:.1f} s"
    if len(modules) == 1:
        ((name, module),) = modules.items()
        ran = [p for p in parts if p in getattr(module, "PARTS", parts)]  # its own parts
        print(
            f"refnet vs {frameworks.title(module)}, {settings.format(','.join(ran))}", file=stream
        )
        reference = getattr(module, "REFERENCE", getattr(module, "TITLE", name))
        print(
            "max rel err = max|ours - ref| / max|ref| per array (ref: "
            f"{reference}); PASS when <= tol (see verify/compare.py)",
            file=stream,
        )
        print(format_table(results[name]), file=stream)
        return
    titles = {n: frameworks.title(modules[n]) for n in results}
    print(
        f"refnet vs {', '.join(titles.values())}, {settings.format(','.join(parts))}", file=stream
    )
    print(
        "cell = the worst max rel err (max|ours - ref| / max|ref| per array) of a layer's "
        "judged rows; PASS when each is <= its tol (see verify/compare.py)",
        file=stream,
    )
    print(format_framework_table(results, skipped, titles, order=list(modules)), file=stream)
    failing = [r for rows in results.values() for r in rows if r.status == "FAIL"]
    if failing:
        print("\nfailing rows:\n" + format_table(failing), file=stream)


def _refuse(message: str):
    """Exit status 2 with one line (``data.cli.exit_status``)."""

    def refused() -> None:
        raise UserError(message)

    return exit_status("refnet.verify", refused)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        parts = parse_parts(args.only)
        names = frameworks.parse(args.against)
    except ValueError as e:
        parser.error(str(e))
    from refnet.verify import network

    network.NET_DEFAULTS["engine"] = args.engine
    modules = {name: frameworks.load(name) for name in names}
    reasons = {name: m.available() for name, m in modules.items()}
    if names == ["torch"] and reasons["torch"]:
        return _refuse("python -m refnet.verify needs PyTorch: pip install -e '.[verify]'")
    if all(reasons.values()):
        return _refuse(
            "no framework to compare with: " + "; ".join(f"{n}: {r}" for n, r in reasons.items())
        )
    from refnet.data.files import write_json
    from refnet.data.progress import Progress
    from refnet.verify.compare import all_passed, report_dict

    dtype = numpy.dtype(args.dtype)
    steps = [
        (name, label, step)
        for name, m in modules.items()
        if not reasons[name]
        for label, step in frameworks.steps(
            m, dtype, args.seed, parts=parts, sizes=SIZES[args.size]
        )
    ]
    results: dict[str, list[Row]] = {name: [] for name in names if not reasons[name]}
    start = time.perf_counter()
    with Progress(total=len(steps), desc="verify", unit="part", enabled=not args.quiet) as bar:
        for name, label, step in steps:
            bar.update(0, part=label)
            results[name] += step()
            bar.update(1, part=label)
    elapsed = time.perf_counter() - start

    table_stream = sys.stderr if args.json == "-" else sys.stdout
    print_report(table_stream, modules, results, args, parts, elapsed)
    rows = [r for name in results for r in results[name]]
    if args.json:
        report = report_dict(
            rows,
            dtype=args.dtype,
            seed=args.seed,
            parts=parts,
            size=args.size,
            elapsed_s=round(elapsed, 3),
            frameworks={
                n: f"skipped ({reasons[n]})" if reasons[n] else frameworks.title(modules[n])
                for n in names
            },
        )
        for row, name in zip(report["rows"], [n for n in results for _ in results[n]], strict=True):
            row["framework"] = name
        if args.json == "-":
            json.dump(report, sys.stdout, indent=1)
            sys.stdout.write("\n")
        else:
            write_json(args.json, report)
    return 0 if all_passed(rows) else 1


if __name__ == "__main__":
    sys.exit(run_command(main, "refnet.verify"))
