"""``python -m refnet.ablate``: the paper's ablations, each a normal training run.

    python -m refnet.ablate --seeds 3 --out /tmp/abl                 # demo set, all variants
    python -m refnet.ablate --data DIR --epochs 10 --variants no-lrn pool-2-2 --out OUT

The paper's configuration and one variant per design choice (``VARIANTS``) are trained on
the same seeds 0..N-1, each as ``python -m refnet.train ... --out OUT/runs/<variant>-s<seed>
--quiet`` in a subprocess, with the same flags otherwise. Then ``OUT/ablations.json``,
``OUT/ablations.png`` and the printed table give, per variant, the mean and standard
deviation over seeds of the final top-1/top-5 error, and the paired difference against the
paper configuration (same seed) with a 95% t interval, beside the paper's own figures.

Statistics (all in percentage points). For variant v and seed s, d_s = err(v, s) -
err(paper, s). Over the n seeds where both runs finished: mean d, standard deviation
sd (n - 1 in the denominator), and the interval mean d +- t_{0.975, n-1} sd / sqrt(n).
``t_quantile`` computes the Student t quantile exactly (bisection on the CDF through the
regularized incomplete beta function), with no SciPy. An interval that contains 0 is
reported as "not distinguishable from noise at this scale". One seed gives no interval.

Epochs to target: the first epoch whose (centre-crop) validation top-1 error is <= the
target: ``--target``, or by default the median over seeds of the paper configuration's
final top-1 error plus ``TARGET_MARGIN`` points (docs/ablations.md).

Resumable: a run whose ``log.jsonl`` ends with an epoch record at the requested epoch (or
an early stop) is skipped ("skipped, finished"); one with a checkpoint is continued with
``--resume``; one with neither starts afresh (a stray ``log.jsonl`` is removed first).
Ctrl-C (SIGINT) and SIGTERM are passed on to the running ``refnet.train`` (``train_one``):
on SIGINT it writes a checkpoint and this command exits 130; on SIGTERM both end by
SIGTERM; re-running continues from the child's last checkpoint either way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from refnet.config import TRAIN_DEFAULTS
from refnet.data.cli import Parser, exit_status, positive_int, run_command
from refnet.data.files import write_json
from refnet.options import CHOICES, DEVICES

if TYPE_CHECKING:
    from matplotlib.artist import Artist

PROG = "refnet.ablate"
PAPER = "paper"
# each variant removes one design choice: the refnet.train flags that do it
VARIANTS = {
    "one-column": ("--columns", "1"),
    "no-lrn": ("--no-lrn",),
    "pool-2-2": ("--pool", "2,2"),
    "no-dropout": ("--dropout", "0"),
    "no-lighting": ("--lighting", "0"),
}
# the paper's reported change of the error when the choice is removed, in points
# (top-1, top-5); None: not given. Dropout has no error figure: the paper says it roughly
# doubles the iterations to converge and that without it the net overfits.
PAPER_FIGURES = {
    "one-column": (1.7, 1.2),
    "no-lrn": (1.4, 1.2),
    "pool-2-2": (0.4, 0.3),
    "no-dropout": (None, None),
    "no-lighting": (1.0, None),  # "over 1%": a lower bound
}
PAPER_TEXT = {
    "one-column": ("+1.7", "+1.2"),
    "no-lrn": ("+1.4", "+1.2"),
    "pool-2-2": ("+0.4", "+0.3"),
    "no-dropout": ("n/a", "n/a"),
    "no-lighting": ("> +1", "n/a"),
}
TARGET_MARGIN = 10.0
NOISE = "not distinguishable from noise at this scale"

EXIT_CODES = {
    0: "done: every run finished; ablations.json, ablations.png and the table written",
    1: "a training run failed (diverged or crashed): its message is above; the others "
    "ran and the summary covers the finished ones; re-running retries the failed one",
}


# -- statistics ----------------------------------------------------------------------
def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom:
    1 - I_{df/(df+t^2)}(df/2, 1/2) / 2 for t >= 0, and symmetric."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (0.5 <= p < 1), by bisection on ``t_cdf``; e.g.
    t_quantile(0.975, 2) = 4.303, t_quantile(0.975, 4) = 2.776."""
    if not 0.5 <= p < 1 or df < 1:
        raise ValueError(f"t_quantile: need 0.5 <= p < 1 and df >= 1, got p={p}, df={df}")
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2.0


def mean_sd(values: Iterable[float]) -> tuple[float | None, float | None]:
    """(mean, sample standard deviation) of ``values``; sd is None for fewer than two."""
    values = list(values)
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def paired_difference(
    variant: Sequence[float], paper: Sequence[float], level: float = 0.95
) -> dict[str, Any]:
    """The mean paired difference variant - paper (two equal-length sequences, one value
    per seed) with its t interval: {"mean", "sd", "n", "t", "low", "high"} (the interval
    entries None for n < 2)."""
    if len(variant) != len(paper):
        raise ValueError(f"paired_difference: {len(variant)} values against {len(paper)}")
    d = [v - p for v, p in zip(variant, paper, strict=True)]
    n = len(d)
    mean, sd = mean_sd(d)
    out = {"mean": mean, "sd": sd, "n": n, "t": None, "low": None, "high": None}
    if n >= 2 and mean is not None and sd is not None:  # (mean_sd gives numbers for n >= 2)
        t = t_quantile(0.5 + level / 2, n - 1)
        half = t * sd / math.sqrt(n)
        out.update(t=t, low=mean - half, high=mean + half)
    return out


def verdict(diff: Mapping[str, Any] | None) -> str:
    """A few words on one difference: noise, or the direction and size."""
    if diff is None or diff["mean"] is None:
        return "no finished pair"
    if diff["low"] is None:
        return "one seed: no interval"
    if diff["low"] <= 0 <= diff["high"]:
        return NOISE
    return f"{'higher' if diff['mean'] > 0 else 'lower'} error ({diff['mean']:+.1f} points)"


# -- the runs ------------------------------------------------------------------------
def read_log(folder: str | Path) -> list[dict[str, Any]]:
    """The epoch records of ``folder/log.jsonl`` (a cut-short last line is ignored)."""
    log = Path(folder) / "log.jsonl"
    if not log.is_file():
        return []
    records = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("kind") == "epoch":
            records.append(record)
    return records


def is_finished(records: Sequence[Mapping[str, Any]], epochs: int) -> bool:
    return bool(records) and (records[-1]["epoch"] >= epochs or bool(records[-1].get("early_stop")))


def run_summary(
    variant: str, seed: int, folder: Path, records: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    last = records[-1]
    return {
        "variant": variant,
        "seed": seed,
        "folder": str(folder),
        "top1_error": 100 * last["val_top1_error"],
        "top5_error": 100 * last["val_top5_error"],
        "train_loss": last["train_loss"],
        "epochs": last["epoch"],
        "top1_by_epoch": [100 * r["val_top1_error"] for r in records],
    }


def epochs_to_target(run: Mapping[str, Any], target: float) -> int | None:
    """The first epoch (1-based) whose val top-1 error is <= ``target`` points (None:
    never)."""
    for epoch, err in enumerate(run["top1_by_epoch"], start=1):
        if err <= target:
            return epoch
    return None


def train_command(
    args: argparse.Namespace, variant: str, seed: int, folder: Path, resume: bool
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "refnet.train",
        "--arch",
        args.arch,
        "--seed",
        str(seed),
        "--epochs",
        str(args.epochs),
        "--out",
        str(folder),
        "--quiet",
    ]
    if args.data is not None:
        cmd += ["--data", args.data]
    if args.device is not None:
        cmd += ["--device", args.device]
    cmd += list(VARIANTS.get(variant, ()))
    if resume:
        cmd.append("--resume")
    return cmd


FORWARDED = (signal.SIGINT, signal.SIGTERM)


def train_one(
    args: argparse.Namespace, variant: str, seed: int, folder: Path, say: Callable[..., object]
) -> int:
    """Train (or resume) one run in a subprocess; its exit status.

    The child runs in a process group of its own, so a Ctrl-C at the terminal reaches
    this process alone, and SIGINT and SIGTERM received here are passed on to the child
    (``Forwarding``), once per signal received: the first SIGINT makes it finish its step
    and write a checkpoint (a second stops it at once). Either way this process waits for
    the child to end, so no run is left training on its own in a folder a re-run would
    resume; then a SIGINT ends this command as Ctrl-C does (130) and a SIGTERM ends it by
    SIGTERM."""
    from refnet.checkpoint import list_checkpoints

    resume = bool(list_checkpoints(folder))
    if not resume and (folder / "log.jsonl").exists():
        (folder / "log.jsonl").unlink()  # a run killed before its checkpoint
    say(f"{folder.name}: {'resuming' if resume else 'training'}", flush=True)
    with Forwarding() as forward:
        proc = forward.to(
            subprocess.Popen(train_command(args, variant, seed, folder, resume), **OWN_GROUP)
        )
        status = proc.wait()
    if signal.SIGTERM in forward.received:
        _error(f"terminated; {folder.name} stopped with status {status}; re-run to continue")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    if signal.SIGINT in forward.received:
        raise KeyboardInterrupt
    return status


# the child in a process group of its own: Popen(process_group=0) on Python 3.11+, else
# start_new_session (a session's leader leads a process group of its own as well)
OWN_GROUP: dict[str, Any] = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
)


class Forwarding:
    """While in the ``with`` block, SIGINT and SIGTERM received here are sent on to the
    child process given to ``to`` instead of acting here (one received before the
    child exists is sent as soon as it does); ``received`` lists them."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._early: list[int] = []
        self._proc: subprocess.Popen[bytes] | None = None

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self._proc is None:
            self._early.append(signum)
        elif self._proc.poll() is None:
            self._proc.send_signal(signum)

    def to(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self._proc = proc
        for signum in self._early:
            proc.send_signal(signum)
        return proc

    def __enter__(self) -> Forwarding:
        self._previous = {s: signal.signal(s, self._forward) for s in FORWARDED}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


# -- the summary -----------------------------------------------------------------------
def summarize(
    runs: list[dict[str, Any]],
    variants: Sequence[str],
    seeds: Sequence[int],
    target: float | None = None,
) -> dict[str, Any]:
    """The ablations.json content from the finished ``runs`` (``run_summary`` dicts).
    ``target``: the top-1 error for epochs-to-target, in points; None: the default rule."""
    by = {(r["variant"], r["seed"]): r for r in runs}
    paper_finals = [by[PAPER, s]["top1_error"] for s in seeds if (PAPER, s) in by]
    rule = (
        f"--target {target:g}"
        if target is not None
        else (f"median final top-1 error of the paper configuration + {TARGET_MARGIN:g} points")
    )
    if target is None and paper_finals:
        target = statistics.median(paper_finals) + TARGET_MARGIN
    for r in runs:
        r["epochs_to_target"] = None if target is None else epochs_to_target(r, target)
    table = {}
    for name in [PAPER, *variants]:
        mine = [by[name, s] for s in seeds if (name, s) in by]
        entry: dict[str, Any] = {
            "flags": list(VARIANTS.get(name, ())),
            "n": len(mine),
            "seeds": [r["seed"] for r in mine],
        }
        for key in ("top1_error", "top5_error", "train_loss"):
            m, sd = mean_sd(r[key] for r in mine)
            entry[key] = {"mean": m, "sd": sd}
        reached = [r["epochs_to_target"] for r in mine if r["epochs_to_target"] is not None]
        entry["epochs_to_target"] = {"mean": mean_sd(reached)[0], "reached": len(reached)}
        if name != PAPER:
            pairs = [s for s in seeds if (name, s) in by and (PAPER, s) in by]
            entry["difference"] = {}
            for key, metric in (("top1_error", "top1"), ("top5_error", "top5")):
                diff = (
                    paired_difference(
                        [by[name, s][key] for s in pairs], [by[PAPER, s][key] for s in pairs]
                    )
                    if pairs
                    else None
                )
                entry["difference"][metric] = diff
                entry[f"verdict_{metric}"] = verdict(diff)
            top1, top5 = PAPER_FIGURES[name]
            entry["paper"] = {
                "top1": top1,
                "top5": top5,
                "text": {"top1": PAPER_TEXT[name][0], "top5": PAPER_TEXT[name][1]},
            }
        table[name] = entry
    return {
        "units": "errors and differences in percentage points; train_loss: "
        "cross-entropy of the last epoch",
        "interval": "95% t interval of the mean paired difference (variant - paper, "
        "same seed), t with n-1 degrees of freedom",
        "target_top1_error": target,
        "target_rule": rule,
        "seeds": list(seeds),
        "variants": table,
        "runs": runs,
    }


def _pm(stat: Mapping[str, Any]) -> str:
    if stat["mean"] is None:
        return "-"
    return f"{stat['mean']:5.1f}" + (f" ± {stat['sd']:.1f}" if stat["sd"] is not None else "")


def _diff(d: Mapping[str, Any] | None) -> str:
    if d is None or d["mean"] is None:
        return "-"
    if d["low"] is None:
        return f"{d['mean']:+.1f}"
    return f"{d['mean']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]"


def format_table(summary: Mapping[str, Any]) -> str:
    """The printed table: one line per variant, then a line per verdict."""
    rows = [
        (
            "variant",
            "n",
            "top-1 err %",
            "top-5 err %",
            "Δtop-1 [95% CI]",
            "Δtop-5 [95% CI]",
            "paper Δ1/Δ5",
            "ep→target",
        )
    ]
    for name, e in summary["variants"].items():
        d = e.get("difference", {})
        paper = e.get("paper")
        ett = e["epochs_to_target"]
        reached = "-" if ett["mean"] is None else f"{ett['mean']:.1f} ({ett['reached']}/{e['n']})"
        if paper:
            rows.append(
                (
                    name,
                    str(e["n"]),
                    _pm(e["top1_error"]),
                    _pm(e["top5_error"]),
                    _diff(d["top1"]),
                    _diff(d["top5"]),
                    f"{paper['text']['top1']} / {paper['text']['top5']}",
                    reached,
                )
            )
        else:
            rows.append(
                (name, str(e["n"]), _pm(e["top1_error"]), _pm(e["top5_error"]), "", "", "", reached)
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    target = summary["target_top1_error"]
    lines.append(
        f"target top-1 error: {'-' if target is None else f'{target:.1f}%'} "
        f"({summary['target_rule']})"
    )
    for name, e in summary["variants"].items():
        if name != PAPER:
            lines.append(f"{name}: top-1 {e['verdict_top1']}; top-5 {e['verdict_top5']}")
    return "\n".join(lines)


def plot_differences(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Per variant, the paired differences with their 95% intervals (top-1 and top-5
    panels) beside the paper's reported figures."""
    from refnet.plots import plt, save_figure

    names = [n for n in summary["variants"] if n != PAPER]
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.8 + 0.7 * max(len(names), 1)), sharey=True)
    for ax, metric, title in zip(
        axes, ("top1", "top5"), ("top-1 error", "top-5 error"), strict=True
    ):
        for i, name in enumerate(names):
            e = summary["variants"][name]
            d = e["difference"][metric]
            y = len(names) - 1 - i
            if d is not None and d["mean"] is not None:
                err = (
                    [[d["mean"] - d["low"]], [d["high"] - d["mean"]]]
                    if d["low"] is not None
                    else None
                )
                ax.errorbar(
                    [d["mean"]],
                    [y + 0.12],
                    xerr=err,
                    fmt="o",
                    color="C0",
                    capsize=4,
                    label="measured (95% CI)" if i == 0 else None,
                )
            value, text = e["paper"][metric], e["paper"]["text"][metric]
            if value is not None:
                ax.plot([value], [y - 0.12], "D", color="C3", label="paper")
                ax.annotate(
                    f"paper {text}",
                    xy=(value, y - 0.12),
                    xytext=(7, -3),
                    textcoords="offset points",
                    fontsize=8,
                    color="C3",
                )
            else:
                ax.annotate(
                    f"paper: {text}",
                    xy=(0.98, y - 0.12),
                    xycoords=("axes fraction", "data"),
                    ha="right",
                    va="center",
                    fontsize=8,
                    color="C3",
                )
        ax.axvline(0, color="0.5", lw=0.8)
        ax.margins(x=0.25)
        ax.set_title(f"{title}: variant - paper configuration", fontsize=10)
        ax.set_xlabel("difference (percentage points; > 0: worse without the choice)", fontsize=9)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names[::-1])
        ax.set_ylim(-0.7, len(names) - 0.3)
        ax.grid(axis="x", alpha=0.3)
    legend: dict[str, Artist] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    n = max((e["n"] for e in summary["variants"].values()), default=0)
    fig.suptitle(
        f"Ablations: {n} seeds, paired differences against the paper configuration", fontsize=10
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    if legend:
        fig.legend(
            legend.values(),
            legend.keys(),
            loc="lower center",
            ncol=len(legend),
            fontsize=8,
            frameon=False,
        )
    return save_figure(fig, path)


# -- the command line ------------------------------------------------------------------
def _data_dir(text: str) -> str:
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory")
    return text


def _out_dir(text: str) -> str:
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder")
    return text


def _target(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be a top-1 error in [0, 100] %, got {text!r}")
    return value


def build_parser() -> Parser:
    p = Parser(
        prog="python -m refnet.ablate",
        description="Train the paper's configuration and one variant per design "
        "choice (one column, no LRN, pooling 2/2, no dropout, no PCA "
        "lighting) on the same seeds, each a refnet.train run in "
        "OUT/runs/<variant>-s<seed>, then write OUT/ablations.json, "
        "OUT/ablations.png and print the paired differences with 95% "
        "intervals beside the paper's figures. Re-running skips finished "
        "runs and resumes unfinished ones.",
        exit_codes=EXIT_CODES,
    )
    a = p.add_argument
    a(
        "--data",
        metavar="DIR",
        type=_data_dir,
        default=None,
        help="data for every run, as refnet.train --data (default: the demo set)",
    )
    a("--arch", choices=CHOICES["arch"], default="demo", help="network size (default demo)")
    a(
        "--seeds",
        type=positive_int,
        default=3,
        help="seeds 0..N-1 per configuration (default 3; 2 or more for an interval)",
    )
    a(
        "--epochs",
        type=positive_int,
        default=None,
        help="epochs per run (default: the arch's, "
        + ", ".join(f"{k} {v['epochs']}" for k, v in TRAIN_DEFAULTS.items())
        + ")",
    )
    a(
        "--variants",
        nargs="+",
        choices=tuple(VARIANTS),
        default=list(VARIANTS),
        metavar="VARIANT",
        help=f"which variants besides the paper configuration (default all: {' '.join(VARIANTS)})",
    )
    a(
        "--target",
        type=_target,
        default=None,
        help="top-1 error (%%) for 'epochs to target' (default: the paper configuration's "
        f"median final top-1 error + {TARGET_MARGIN:g} points)",
    )
    a(
        "--device",
        choices=DEVICES,
        default=None,
        help="as refnet.train --device (default its own, auto)",
    )
    a(
        "--out",
        metavar="OUT",
        type=_out_dir,
        required=True,
        help="folder for the runs and the results",
    )
    return p


def _error(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None, say: Callable[..., object] = print) -> int:
    args = build_parser().parse_args(argv)
    return exit_status(PROG, lambda: _ablate(args, say))


def _ablate(args: argparse.Namespace, say: Callable[..., object]) -> int:
    """Train the variants ``args`` asks for and report them; the exit status."""
    if args.epochs is None:
        args.epochs = TRAIN_DEFAULTS[args.arch]["epochs"]
    variants = list(dict.fromkeys(args.variants))
    seeds = list(range(args.seeds))
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    runs, failed = [], []
    for seed in seeds:
        for name in [PAPER, *variants]:
            folder = out / "runs" / f"{name}-s{seed}"
            folder.mkdir(exist_ok=True)
            records = read_log(folder)
            if not is_finished(records, args.epochs):
                status = train_one(args, name, seed, folder, say)
                if status == 130:
                    raise KeyboardInterrupt
                if status == 2:
                    _error(f"error: {folder.name} was refused (its message is above)")
                    return 2
                if status != 0:
                    _error(f"{folder.name} failed with status {status}; continuing with the others")
                    failed.append(folder.name)
                    continue
                records = read_log(folder)
            else:
                say(f"{folder.name}: skipped, finished ({records[-1]['epoch']} epochs)", flush=True)
            runs.append(run_summary(name, seed, folder, records))
    summary = summarize(runs, variants, seeds, args.target)
    summary.update(arch=args.arch, epochs=args.epochs, data=args.data or "demo set", failed=failed)
    write_json(out / "ablations.json", summary)
    plot_differences(summary, out / "ablations.png")
    say(format_table(summary))
    say(f"written: {out / 'ablations.json'}, {out / 'ablations.png'}")
    if failed:
        _error(f"{len(failed)} run(s) failed: {', '.join(failed)}; re-run to retry them")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
