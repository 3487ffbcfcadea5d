"""Benchmark of the main job: ``python -m refnet.bench.mainjob [--json FILE] [-- TRAIN FLAGS]``.

Runs ``python -m refnet.train`` (with no flags: the demo, building the demo set first if it
is not cached) in this process, then times the bare training step in the same process on
the same network and inputs: the network's loss and gradients and the SGD update on one
batch of training views made beforehand, nothing else (no loader, augmentation, dropout
draws, evaluation, checkpoints or plots). It reports

- the run's wall time (from the command line's parsing; a fresh process adds Python's and
  the libraries' imports, about a second) and its parts: before the first epoch (the data
  set, built when not cached, and the network), the epochs' training loops, and the rest
  (evaluations, checkpoints, plots);
- the training loops' images/s against the bare step's: what the loader, the augmentation,
  the dropout draws and the bookkeeping of each step cost the run;
- the final 10-crop validation error.

Timings are wall-clock on whatever else the machine is doing: run it on an idle machine.

Exit status: 0 when measured, 2 for a bad option value (or a training run that fails as
``python -m refnet.train`` would), 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy

from refnet.data.cli import Parser, positive_int, run_command
from refnet.data.files import write_json
from refnet.train import Trainer, train_run


def bare_steps(trainer: Trainer, steps: int, warmup: int = 3) -> float:
    """Images/s of ``steps`` bare training steps (module doc) on a fresh copy of
    ``trainer``'s network, after ``warmup`` untimed ones."""
    with Trainer(trainer.cfg) as twin:
        twin.fresh_start()
        batches = twin.pipeline.train_batches()
        images, labels, indices = next(batches)
        batches.close()
        x = twin.pipeline.train_views(images, indices, 0)
        y = twin.pipeline.labels(labels)
        rng = numpy.random.default_rng(0)

        def step() -> None:
            _, grads = twin.net.loss_and_grad_columns(x, y, train=True, rng=rng)
            twin.sgd.step(grads)

        for _ in range(warmup):
            step()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * len(y) / (time.perf_counter() - t0)


def measure(train_flags: Sequence[str], steps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="refnet-mainjob-") as tmp:
        start = time.perf_counter()
        trainer = train_run(["--quiet", "--out", f"{tmp}/run", *train_flags], stdout=print)
        end = time.perf_counter()
        history = trainer.history
        loops = sum(r["seconds"] for r in history)
        images = sum(r["images_per_s"] * r["seconds"] for r in history)
        first = trainer.clock[0]  # when the first epoch began (perf_counter)
        bare = bare_steps(trainer, steps)
    run_rate = images / loops
    return {
        "run_s": end - start,
        "before_first_epoch_s": first - start,
        "training_loops_s": loops,
        "rest_s": end - first - loops,
        "epochs": len(history),
        "run_images_per_s": run_rate,
        "bare_step_images_per_s": bare,
        "run_over_bare": run_rate / bare,
        "final_val_top1_error": history[-1]["val_top1_error"],
        "final_val_views": history[-1]["val_views"],
    }


EXIT_CODES = {0: "measured", 2: "bad option value, or the training run failed", 130: "Ctrl-C"}


def build_parser() -> Parser:
    ap = Parser(
        prog="python -m refnet.bench.mainjob",
        description="The main job (python -m refnet.train, the demo by default) against "
        "its bare training step, in one process.",
        exit_codes=EXIT_CODES,
    )
    ap.add_argument(
        "--steps", type=positive_int, default=30, help="bare steps to time (default 30)"
    )
    ap.add_argument(
        "--json",
        metavar="PATH",
        help="also write the results to this JSON file (default: printed only)",
    )
    ap.add_argument(
        "train_flags",
        nargs="*",
        metavar="TRAIN_FLAG",
        help="flags for python -m refnet.train, after -- (default: none, the demo)",
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = measure(args.train_flags, args.steps)
    for k, v in results.items():
        print(f"{k:25s} {v:10.3f}" if isinstance(v, float) else f"{k:25s} {v!s:>10}")
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "refnet.bench.mainjob"))
