"""``python -m verify``: refnet's numbers against PyTorch's, as a table (and JSON).

    python -m verify                          # everything, float64, both network sizes
    python -m verify --dtype float32          # float32 on both sides, float32 tolerances
    python -m verify --only layers,sgd        # some parts: layers, network, sgd, conventions,
                                              # reference (fast paths vs layers.reference)
    python -m verify --size small --json out.json
    python -m verify --json -                 # JSON on stdout, the table on stderr

Exit status: 0 when every judged row passes, 1 when any fails, 2 for a usage error or
without PyTorch (pip install -e '.[verify]'), 130 when interrupted (Ctrl-C).
The error measure and the tolerances are documented in ``verify.compare``.
"""

import json
import sys
import time

import numpy

from data.cli import USAGE, Parser, nonnegative_int, run_command

PARTS = ("layers", "network", "sgd", "conventions", "reference")
SIZES = {"small": ("small",), "paper": ("paper",), "both": ("small", "paper")}
EXIT_CODES = {0: "every judged row passes", 1: "some row fails (the table says which)",
              2: "a bad option value, or PyTorch is not installed (pip install -e "
                 "'.[verify]')"}


def build_parser():
    parser = Parser(
        prog="python -m verify", exit_codes=EXIT_CODES,
        description="Compare refnet's layers, network and SGD with PyTorch twins, and "
                    "its fast paths with layers.reference.")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="dtype of both sides (default float64)")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="seed of every random draw (default 0)")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run, from {','.join(PARTS)} "
                             "(default all)")
    parser.add_argument("--size", choices=tuple(SIZES), default="both",
                        help="network sizes: small (tiny and demo archs), paper "
                             "(alexnet at 227, batch 2), or both (default both)")
    parser.add_argument("--json", metavar="PATH",
                        help="also write the report as JSON to PATH ('-' for stdout, "
                             "then the table goes to stderr; default: the table only)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (default: a progress bar on stderr)")
    return parser


def parse_parts(text):
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"--only: unknown part(s) {unknown or text!r}, choose from "
                         f"{','.join(PARTS)}")
    return [p for p in PARTS if p in parts]


def plan(parts, dtype, seed, sizes):
    """[(name, thunk returning report rows)] for the chosen parts (imports torch here)."""
    from verify import conventions, layer_cases, network, reference_cases, sgd
    steps = []
    if "layers" in parts:
        steps += [(f"layers:{name}", lambda n=name: layer_cases.run(dtype, seed, [n]))
                  for name in layer_cases.CASES]
    if "network" in parts:
        steps += [(f"network:{s}", lambda s=s: network.run(dtype, seed, (s,))) for s in sizes]
    if "sgd" in parts:
        steps.append(("sgd", lambda: sgd.run(dtype, seed)))
    if "conventions" in parts:
        steps.append(("conventions", lambda: conventions.run(dtype, seed)))
    if "reference" in parts:
        steps += [(f"reference:{name}", lambda n=name: reference_cases.run(dtype, seed, [n]))
                  for name in reference_cases.CASES]
    return steps


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        parts = parse_parts(args.only)
    except ValueError as e:
        parser.error(str(e))
    try:
        import torch                        # every part compares against it
    except ImportError:
        print("verify: error: python -m verify needs PyTorch: pip install -e '.[verify]'",
              file=sys.stderr)
        return USAGE
    from data.files import write_json
    from data.progress import Progress
    from verify.compare import all_passed, format_table, report_dict

    steps = plan(parts, numpy.dtype(args.dtype), args.seed, SIZES[args.size])
    start = time.perf_counter()
    rows = []
    with Progress(total=len(steps), desc="verify", unit="part",
                  enabled=not args.quiet) as bar:
        for name, step in steps:
            bar.update(0, part=name)
            rows += step()
            bar.update(1, part=name)
    elapsed = time.perf_counter() - start

    table_stream = sys.stderr if args.json == "-" else sys.stdout
    print(f"refnet vs PyTorch {torch.__version__}, dtype {args.dtype}, "
          f"seed {args.seed}, parts {','.join(parts)}, {elapsed:.1f} s", file=table_stream)
    print("max rel err = max|ours - ref| / max|ref| per array (ref: PyTorch, or "
          "layers.reference in part reference); PASS when <= tol (see verify/compare.py)",
          file=table_stream)
    print(format_table(rows), file=table_stream)
    if args.json:
        report = report_dict(rows, dtype=args.dtype, seed=args.seed, parts=parts,
                             size=args.size, elapsed_s=round(elapsed, 3))
        if args.json == "-":
            json.dump(report, sys.stdout, indent=1)
            sys.stdout.write("\n")
        else:
            write_json(args.json, report)
    return 0 if all_passed(rows) else 1


if __name__ == "__main__":
    sys.exit(run_command(main, "verify"))
