"""A model of data-parallel scaling past this machine: ``python -m refnet.bench.scaling``.

Prints, for 2, 8, 64 and 256 GPUs (``--gpus``), the step time, images/s and efficiency
of data-parallel AlexNet training with a ring allreduce of the gradient, with and
without overlapping the allreduce with the backward pass, and draws the efficiency
against the number of GPUs (``--plot PATH``). docs/distributed.md explains the model and
quotes its table; everything it assumes is a named constant below.

The model (latency-bandwidth, "alpha-beta"). A ring allreduce of S bytes over p ranks
takes 2 (p - 1) steps, each moving S / p bytes over every link at once:

    T(p) = 2 (p - 1) alpha + 2 (p - 1) / p * S / beta

with alpha the time of one step's message start-up and beta the bandwidth of the
slowest link of the ring in one direction. Up to 8 GPUs (one node) the ring runs over
NVLink; beyond, it crosses nodes, and with one InfiniBand adapter per GPU (as on
NVIDIA's DGX nodes) its slowest link is one adapter.

Each GPU computes a batch of ``per_gpu_batch`` images per step at ``images_per_s``
(weak scaling: the global batch grows with p, which the learning rate must follow, see
docs/distributed.md). Without overlap the step is compute + T(p). With overlap, the
buckets of fc8, fc7 and fc6 (96% of the bytes, ready first in backward) are sent while
the convolutions' backward runs, which is ``conv_backward_share`` of the step's compute
(the convolutions are 92% of the FLOPs and backward is twice forward: 2 x 0.92 / 3 =
0.61); what is left is exposed: max(0, T_fc - hidden) + T_conv, each with its own
latency term.
"""

import sys

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


def ring_time(p, nbytes, link):
    """T(p) of the module doc for ``nbytes`` over the ring's slowest ``link``."""
    if p == 1:
        return 0.0
    return 2 * (p - 1) * ALPHA[link] + 2 * (p - 1) / p * nbytes / LINKS[link]


def ring_link(p):
    return "NVLink 4 (H100 SXM)" if p <= GPUS_PER_NODE else "InfiniBand NDR"


def step(p, images_per_s, per_gpu_batch=128, overlap=False):
    """{compute, communication (exposed), step, images_per_s, efficiency} at p GPUs."""
    compute = per_gpu_batch / images_per_s
    link = ring_link(p)
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


def table(gpus, images_per_s, per_gpu_batch):
    rows = []
    for p in gpus:
        plain, hidden = (step(p, images_per_s, per_gpu_batch, o) for o in (False, True))
        rows.append((p, plain, hidden))
    return rows


def build_parser():
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
    p.add_argument("--plot", metavar="PATH", help="also draw efficiency vs GPUs to PATH")
    return p


def main(argv=None):
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
    rows = table(gpus, args.images_per_s, args.batch)
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
    if args.plot:
        plot(args, rows)
    return 0


def plot(args, rows):
    import matplotlib

    from refnet.plots import save_figure

    matplotlib.use("Agg")
    from matplotlib import pyplot

    fig, ax = pyplot.subplots(figsize=(6, 3.6))
    for speed, style in ((1000.0, ":"), (args.images_per_s, "-"), (10000.0, "--")):
        r = table(
            sorted(set([1, 2, 4, 8, 16, 32, 64, 128, 256] + [p for p, _, _ in rows])),
            speed,
            args.batch,
        )
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
    ax.set_xscale("log", base=2)
    ax.set_xlabel("GPUs (8 per node: NVLink inside, InfiniBand NDR between)")
    ax.set_ylabel("scaling efficiency (%)")
    ax.set_ylim(0, 102)
    ax.axvline(8.5, color="0.8", lw=0.8)
    ax.legend(fontsize=6.5, loc="lower left")
    ax.set_title(f"AlexNet data parallel, {args.batch} images per GPU", fontsize=9)
    fig.tight_layout()
    save_figure(fig, args.plot)
    pyplot.close(fig)


if __name__ == "__main__":
    sys.exit(run_command(main, "refnet.bench.scaling"))
