"""A model of data-parallel scaling past this machine: ``python -m refnet.bench.scaling``.

    python -m refnet.bench.scaling [--gpus 2,8,64,256] [--images-per-s 3000] [--batch 128]
                                   [--scheme data|hybrid|both] [--link NAME] [--plot PATH]

Prints, for each GPU count p, the step time, images/s and efficiency of AlexNet training
(weak scaling: ``per_gpu_batch`` images per GPU at ``images_per_s``), data parallel with
a ring allreduce of the gradient after backward and overlapped with it, and the hybrid
(convolutions data parallel, fc6-fc8 model parallel); ``--plot`` draws the efficiency
against p. Every assumption is a named constant below; docs/distributed.md ("Scaling
past this machine: a model", "The hybrid scheme") states them with their sources and
quotes the tables.

Latency-bandwidth model, alpha one ring step's start-up, beta the ring's slowest link
in one direction (NVLink up to 8 GPUs, one InfiniBand adapter per GPU beyond):

    allreduce of S bytes:       T(p) = 2 (p - 1) alpha + 2 (p - 1) / p * S / beta
    allgather, reduce-scatter:  (p - 1) alpha + sent / beta  (an allreduce: 2 (p - 1) alpha)
    data parallel, no overlap:  compute + T(p)
    data parallel, overlapped:  compute + max(0, T_fc - hidden) + T_conv
    hybrid:                     compute + the 7 activation exchanges + T_conv

``hidden`` is ``CONV_BACKWARD_SHARE`` of the compute (2 x 0.92 / 3 = 0.61: the
convolutions' backward), behind which the fc buckets (96% of the bytes) are sent; each
T has its own latency term. ``sent`` is the busiest rank's bytes of the collective
(``refnet.bench.traffic``). In the hybrid the seven activation exchanges and the
convolutions' 9.3 MB bucket are exposed, the labels and indices hidden, and compute
per GPU is the data-parallel step's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from refnet.bench import traffic
from refnet.data.cli import Parser, positive_int, run_command

PARAMS = 60_965_224  # alexnet (refnet.summary)
FC_PARAMS = 58_631_144  # fc6, fc7, fc8
BYTES = 4  # float32 gradients
CONV_BACKWARD_SHARE = 2 * 0.919 / 3  # convs' share of FLOPs (refnet.summary), bwd = 2 fwd

# Links, one direction, in bytes/s, with their public sources:
LINKS = {
    # NVIDIA H100 SXM datasheet: NVLink 900 GB/s per GPU, both directions together
    "NVLink 4 (H100 SXM)": 450e9,
    # InfiniBand NDR, 400 Gb/s per port (InfiniBand Trade Association roadmap; NVIDIA
    # ConnectX-7 datasheet); one adapter per GPU
    "InfiniBand NDR": 50e9,
    # PCI Express 2.0 x16 (PCI-SIG): 5 GT/s per lane, 8b/10b coding, 16 lanes: the GTX
    # 580s of the paper
    "PCIe 2.0 x16": 8e9,
}
# Start-up time of one ring step: a few microseconds for a message between GPUs on
# NVLink and about twice that across an InfiniBand switch (an assumption of the model,
# of the order NCCL's small-message allreduce times show; it matters only for the
# small last bucket).
ALPHA = {"NVLink 4 (H100 SXM)": 5e-6, "InfiniBand NDR": 10e-6, "PCIe 2.0 x16": 10e-6}
GPUS_PER_NODE = 8

# The paper: 90 epochs of 1.2 million images in five to six days on two GTX 580s
PAPER_IMAGES_PER_S = 90 * 1.2e6 / (5.5 * 86400)


def ring_time(p: int, nbytes: float, link: str) -> float:
    """T(p) of the module doc for ``nbytes`` over the ring's slowest ``link``."""
    if p == 1:
        return 0.0
    return 2 * (p - 1) * ALPHA[link] + 2 * (p - 1) / p * nbytes / LINKS[link]


def ring_link(p: int) -> str:
    return "NVLink 4 (H100 SXM)" if p <= GPUS_PER_NODE else "InfiniBand NDR"


def step(
    p: int,
    images_per_s: float,
    per_gpu_batch: int = 128,
    overlap: bool = False,
    link: str | None = None,
) -> dict[str, Any]:
    """{compute, communication (exposed), step, images_per_s, efficiency} at p GPUs
    (``link``: the ring's slowest link; None: ``ring_link(p)``)."""
    compute = per_gpu_batch / images_per_s
    link = link or ring_link(p)
    if not overlap:
        exposed = ring_time(p, PARAMS * BYTES, link)
    else:
        fc = ring_time(p, FC_PARAMS * BYTES, link)
        conv = ring_time(p, (PARAMS - FC_PARAMS) * BYTES, link)
        exposed = max(0.0, fc - CONV_BACKWARD_SHARE * compute) + conv
    total = compute + exposed
    return {
        "gpus": p,
        "link": link,
        "compute_s": compute,
        "exposed_s": exposed,
        "step_s": total,
        "images_per_s": p * per_gpu_batch / total,
        "efficiency": compute / total,
    }


# The hybrid's exchanges on the critical path (module doc), as refnet.bench.traffic names them
ACTIVATIONS = (
    "gather_pool5",
    "gather_fc6",
    "gather_fc7",
    "gather_fc8",
    "scatter_fc8_dx",
    "scatter_fc7_dx",
    "scatter_fc6_dx",
)


def collective_time(p: int, sent: float, link: str, phases: int = 1) -> float:
    """A ring collective's time: ``phases`` (p - 1) alpha + ``sent`` / beta, ``sent`` the
    bytes the busiest rank sends (an allgather or reduce-scatter is one phase, an
    allreduce two)."""
    if p == 1:
        return 0.0
    return phases * (p - 1) * ALPHA[link] + sent / LINKS[link]


def hybrid_step(
    p: int,
    images_per_s: float,
    per_gpu_batch: int = 128,
    link: str | None = None,
    arch: str = "alexnet",
) -> dict[str, Any]:
    """The hybrid's {compute, activations (exposed), conv allreduce (exposed), step,
    images_per_s, efficiency, speedup} at p GPUs (module doc)."""
    compute = per_gpu_batch / images_per_s
    link = link or ring_link(p)
    sent = traffic.bytes_per_step(arch, ranks=p, batch=p * per_gpu_batch, scheme="hybrid")
    busiest = {name: max(per_rank) for name, per_rank in sent["parts"].items()}
    activations = sum(collective_time(p, busiest[name], link) for name in ACTIVATIONS)
    conv = collective_time(p, busiest["conv_grad"], link, phases=2)
    total = compute + activations + conv
    return {
        "gpus": p,
        "link": link,
        "compute_s": compute,
        "activations_s": activations,
        "conv_s": conv,
        "exposed_s": activations + conv,
        "step_s": total,
        "images_per_s": p * per_gpu_batch / total,
        "efficiency": compute / total,
        "speedup": p * compute / total,
        "bytes_per_gpu": sent["max"],
    }


def table(
    gpus: Sequence[int], images_per_s: float, per_gpu_batch: int, link: str | None = None
) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    rows = []
    for p in gpus:
        plain, hidden = (step(p, images_per_s, per_gpu_batch, o, link) for o in (False, True))
        rows.append((p, plain, hidden))
    return rows


def hybrid_table(
    gpus: Sequence[int], images_per_s: float, per_gpu_batch: int, link: str | None = None
) -> list[tuple[int, dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """``[(p, hybrid, data overlapped, data after backward)]`` for each p of ``gpus``."""
    return [
        (
            p,
            hybrid_step(p, images_per_s, per_gpu_batch, link),
            step(p, images_per_s, per_gpu_batch, True, link),
            step(p, images_per_s, per_gpu_batch, False, link),
        )
        for p in gpus
    ]


def hybrid_wins_up_to(
    images_per_s: float, per_gpu_batch: int, link: str | None = None, most: int = 256
) -> tuple[int, int]:
    """The largest power of two p <= ``most`` up to which the hybrid step is no slower
    than the data-parallel one, after backward and overlapped: ``(p_after, p_overlap)``
    (1 where it never wins)."""
    wins = [1, 1]
    p = 2
    while p <= most:
        hybrid = hybrid_step(p, images_per_s, per_gpu_batch, link)["step_s"]
        for i, overlap in enumerate((False, True)):
            if (
                wins[i] == p // 2
                and hybrid <= step(p, images_per_s, per_gpu_batch, overlap, link)["step_s"]
            ):
                wins[i] = p
        p *= 2
    return wins[0], wins[1]


def build_parser() -> Parser:
    p = Parser(
        prog="python -m refnet.bench.scaling",
        description=__doc__.split("\n")[0],
        exit_codes={0: "printed", 2: "a bad option value"},
    )
    p.add_argument(
        "--gpus", default="2,8,64,256", help="comma-separated GPU counts (default 2,8,64,256)"
    )
    p.add_argument(
        "--images-per-s",
        type=float,
        default=3000.0,
        help="one GPU's training throughput at the per-GPU batch (default "
        "3000: an assumption; replace it with a measured step)",
    )
    p.add_argument(
        "--batch", type=positive_int, default=128, help="images per GPU per step (default 128)"
    )
    p.add_argument(
        "--scheme",
        choices=("data", "hybrid", "both"),
        default="both",
        help="data parallel, the hybrid (convolutions data parallel, fc layers model "
        "parallel) or both (default both)",
    )
    p.add_argument(
        "--link",
        choices=tuple(LINKS),
        help="every ring's slowest link (default: NVLink 4 up to 8 GPUs, InfiniBand NDR beyond)",
    )
    p.add_argument("--plot", metavar="PATH", help="also draw efficiency vs GPUs to PATH")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        gpus = [int(g) for g in args.gpus.split(",")]
        if any(g < 1 for g in gpus):
            raise ValueError
    except ValueError:
        print(
            f"refnet.bench.scaling: error: --gpus must be positive integers, got {args.gpus!r}",
            file=sys.stderr,
        )
        return 2
    if not args.images_per_s > 0:
        print(
            f"refnet.bench.scaling: error: --images-per-s must be > 0, got {args.images_per_s}",
            file=sys.stderr,
        )
        return 2
    rows = table(gpus, args.images_per_s, args.batch, args.link)
    if args.scheme in ("data", "both"):
        print_data_table(args, rows)
    if args.scheme in ("hybrid", "both"):
        if args.scheme == "both":
            print()
        print_hybrid_table(args, gpus)
    if args.plot:
        plot(args, rows)
    return 0


def print_data_table(
    args: argparse.Namespace, rows: Sequence[tuple[int, dict[str, Any], dict[str, Any]]]
) -> None:
    print(
        f"AlexNet data parallel, ring allreduce of {PARAMS * BYTES / 1e6:.0f} MB per step, "
        f"{args.batch} images per GPU at {args.images_per_s:.0f} images/s each "
        f"(compute {args.batch / args.images_per_s * 1e3:.1f} ms per step); the paper: "
        f"{PAPER_IMAGES_PER_S:.0f} images/s on 2 GTX 580"
    )
    print(
        "| GPUs | ring's slowest link | allreduce after backward: exposed ms, images/s, "
        "efficiency | overlapped with backward: exposed ms, images/s, efficiency | "
        "x paper |"
    )
    print("|---|---|---|---|---|")
    for p, plain, hidden in rows:
        print(
            f"| {p} | {plain['link']} | {plain['exposed_s'] * 1e3:.1f}, "
            f"{plain['images_per_s']:,.0f}, {100 * plain['efficiency']:.0f}% | "
            f"{hidden['exposed_s'] * 1e3:.1f}, {hidden['images_per_s']:,.0f}, "
            f"{100 * hidden['efficiency']:.0f}% | "
            f"{hidden['images_per_s'] / PAPER_IMAGES_PER_S:,.0f} |"
        )


def print_hybrid_table(args: argparse.Namespace, gpus: Sequence[int]) -> None:
    print(
        f"AlexNet hybrid (convolutions data parallel, fc6-fc8 model parallel), "
        f"{args.batch} images per GPU at {args.images_per_s:.0f} images/s each; the "
        "activation exchanges exposed, the convolutions' allreduce after backward"
    )
    print(
        "| GPUs | ring's slowest link | MB sent per GPU | activations ms | conv allreduce "
        "ms | images/s | efficiency | speed-up | vs data parallel: after backward, "
        "overlapped |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for p, h, hidden, plain in hybrid_table(gpus, args.images_per_s, args.batch, args.link):
        print(
            f"| {p} | {h['link']} | {h['bytes_per_gpu'] / 1e6:,.1f} | "
            f"{h['activations_s'] * 1e3:.1f} | {h['conv_s'] * 1e3:.1f} | "
            f"{h['images_per_s']:,.0f} | {100 * h['efficiency']:.0f}% | "
            f"{h['speedup']:.2f} | {h['images_per_s'] / plain['images_per_s']:.2f}x, "
            f"{h['images_per_s'] / hidden['images_per_s']:.2f}x |"
        )
    after, overlap = hybrid_wins_up_to(args.images_per_s, args.batch, args.link)

    def upto(p: int) -> str:
        return f"up to {p} GPUs" if p > 1 else "at no GPU count (slower from 2 GPUs on)"

    print(
        f"The hybrid step is no slower than the data-parallel one with the allreduce after "
        f"backward {upto(after)}, than the overlapped one {upto(overlap)} (powers of two "
        "up to 256)"
    )


def plot(
    args: argparse.Namespace, rows: Sequence[tuple[int, dict[str, Any], dict[str, Any]]]
) -> None:
    import matplotlib

    from refnet.plots import save_figure

    matplotlib.use("Agg")
    from matplotlib import pyplot

    fig, ax = pyplot.subplots(figsize=(6, 3.6))
    gpus = sorted(set([1, 2, 4, 8, 16, 32, 64, 128, 256] + [p for p, _, _ in rows]))
    for speed, style in ((1000.0, ":"), (args.images_per_s, "-"), (10000.0, "--")):
        if args.scheme in ("data", "both"):
            r = table(gpus, speed, args.batch, args.link)
            ax.plot(
                [p for p, _, _ in r],
                [100 * a["efficiency"] for _, a, _ in r],
                "C0" + style,
                label=f"after backward, {speed:.0f} img/s/GPU",
            )
            ax.plot(
                [p for p, _, _ in r],
                [100 * b["efficiency"] for _, _, b in r],
                "C1" + style,
                label=f"overlapped, {speed:.0f} img/s/GPU",
            )
        if args.scheme in ("hybrid", "both"):
            ax.plot(
                gpus,
                [100 * hybrid_step(p, speed, args.batch, args.link)["efficiency"] for p in gpus],
                "C2" + style,
                label=f"hybrid, {speed:.0f} img/s/GPU",
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel(
        f"GPUs (every ring on {args.link})"
        if args.link
        else "GPUs (8 per node: NVLink inside, InfiniBand NDR between)"
    )
    ax.set_ylabel("scaling efficiency (%)")
    ax.set_ylim(0, 102)
    if not args.link:
        ax.axvline(8.5, color="0.8", lw=0.8)
    ax.legend(fontsize=6.5, loc="lower left")
    schemes = {"data": "data parallel", "hybrid": "hybrid", "both": "data parallel and hybrid"}
    ax.set_title(f"AlexNet {schemes[args.scheme]}, {args.batch} images per GPU", fontsize=9)
    fig.tight_layout()
    save_figure(fig, args.plot)
    pyplot.close(fig)


if __name__ == "__main__":
    sys.exit(run_command(main, "refnet.bench.scaling"))
