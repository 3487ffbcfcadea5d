"""``python -m refnet.evaluate``: top-1/top-5 error of a checkpoint, centre crop and 10 crops.

    python -m refnet.evaluate --checkpoint RUN_DIR/ckpt-00001234.h5 --data OUT_DIR

The network is rebuilt from the checkpoint's configuration (arch, columns, LRN, pooling,
dropout mode, input scaling) and its parameters; the validation images are those of
``OUT_DIR/val.h5``, preprocessed as in training (the training set's mean image, and the
pixel-std scaling when the run used it). "center" is the single centre crop; "ten" is
the paper's test: the 4 corner and centre crops and their mirrors, softmax outputs
averaged over the 10 views (``refnet.metrics``).

Exit status: 0 evaluated, 2 for a bad option or a checkpoint or data directory that
cannot be used (one line says which), 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

import numpy

from refnet import checkpoint
from refnet.config import TrainConfig, UsageError
from refnet.data.cli import Parser, existing_file, exit_status, positive_int, run_command
from refnet.layers import backend
from refnet.layers.backend import Array
from refnet.metrics import average_views, topk_errors
from refnet.network import AlexNet, build_network
from refnet.options import DEVICES, NetOptions, backend_for_device

if TYPE_CHECKING:
    from refnet.distributed import Solo
    from refnet.train_inputs import Config, InputPipeline


def predict_views(net: AlexNet, views: Array) -> numpy.ndarray:
    """Class probabilities (N, K) on the host: (N, 3, Cr, Cr) views, or (V, N, 3, Cr, Cr)
    averaged over V (the 10-crop test)."""
    if views.ndim == 4:
        return backend.asnumpy(net.predict_proba(views))
    per_view = numpy.stack([backend.asnumpy(net.predict_proba(v)) for v in views])  # (V, N, K)
    return average_views(per_view)


def evaluate(
    net: AlexNet,
    pipeline: InputPipeline,
    views: str = "center",
    batch: int = 64,
    world: Solo | None = None,
) -> dict[str, float]:
    """``{"top1": error, "top5": error, "n": images}`` on the pipeline's validation set.
    With a ``world`` of several ranks (``refnet.distributed``) each rank evaluates its
    block of the set and the counts of misses are summed: the same errors, exactly.
    A hybrid network (``net.ranks``: every forward is a collective) goes through the same
    batches of the whole set on every rank, each rank its ``numpy.array_split`` slice of
    each (no batch smaller than the number of ranks), and counts the misses of its slice
    in the probabilities of the whole batch that every rank receives."""
    ranks = getattr(net, "ranks", None)
    if ranks is not None:
        return _evaluate_hybrid(net, pipeline, views, batch, ranks)
    part = (0, 1) if world is None else (world.rank, world.size)
    counts = numpy.zeros(3)  # misses at top-1, misses at top-5, images
    for images, y in pipeline.val_batches(batch, part=part):
        probs = predict_views(net, pipeline.eval_views(images, views))  # (B, K)
        errs = topk_errors(probs, y, ks=(1, 5))
        counts += [errs[1] * len(y), errs[5] * len(y), len(y)]
    counts = numpy.rint(counts)  # whole numbers (each error is misses / B)
    if world is not None:
        world.allreduce(counts)
    if counts[2] == 0:
        raise ValueError("evaluate: the validation set is empty")
    return {"top1": counts[0] / counts[2], "top5": counts[1] / counts[2], "n": int(counts[2])}


def _evaluate_hybrid(
    net: AlexNet, pipeline: InputPipeline, views: str, batch: int, world: Solo
) -> dict[str, float]:
    """``evaluate`` of a network split over the ranks of ``world`` (hybrid parallel)."""
    counts = numpy.zeros(3)  # misses at top-1, misses at top-5, images (this rank's)
    for images, y in pipeline.val_batches(max(batch, world.size), least=world.size):
        mine = numpy.array_split(numpy.arange(len(y)), world.size)[world.rank]
        probs = predict_views(net, pipeline.eval_views(images[mine], views))  # (B, K)
        errs = topk_errors(probs[mine], y[mine], ks=(1, 5))
        counts += [errs[1] * len(mine), errs[5] * len(mine), len(mine)]
    counts = numpy.rint(counts)
    world.allreduce(counts)
    if counts[2] == 0:
        raise ValueError("evaluate: the validation set is empty")
    return {"top1": counts[0] / counts[2], "top5": counts[1] / counts[2], "n": int(counts[2])}


def checkpoint_argument(text: str) -> str:
    """An ``argparse`` type for ``--checkpoint``: a checkpoint file, or a run directory
    holding at least one (``load_network`` takes its newest valid one)."""
    if os.path.isdir(text):
        if not checkpoint.list_checkpoints(text):
            raise argparse.ArgumentTypeError(f"{text!r} holds no checkpoint (ckpt-<step>.h5)")
        return text
    return existing_file(text)


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint`` and ``--device``: which trained network, on what (evaluate,
    predict)."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="CKPT",
        type=checkpoint_argument,
        help="a ckpt-*.h5 file, or a run directory: its best.h5 (the best epoch of a run "
        "that stopped early) when it verifies, else its newest valid checkpoint (required)",
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="cpu: NumPy; gpu: CuPy; auto: gpu when CuPy sees a device (default auto)",
    )


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """``--data``: the data set a trained network is run on (evaluate, neighbors)."""
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="data directory with train.h5 and "
        "val.h5, or a folder of images (its store is built at the arch's "
        "size into the cache once) (default: the one the run trained on)",
    )


def open_data(net: AlexNet, cfg: Config, data: str | None = None) -> InputPipeline:
    """The ``InputPipeline`` of the run's data set, or of ``data`` (a store, or a folder
    of images, built and cached), checked to have ``net``'s number of classes."""
    from refnet.train_inputs import DataError, InputPipeline, ensure_data

    if data:
        cfg = cfg.replace(
            data=ensure_data(
                cfg.replace(data=data), say=lambda m: print(m, file=sys.stderr, flush=True)
            )
        )
    pipeline = InputPipeline(cfg)
    if pipeline.num_classes != net.num_classes:
        pipeline.close()
        raise DataError(
            f"{cfg.data} has {pipeline.num_classes} classes, the checkpoint {net.num_classes}"
        )
    return pipeline


def load_network(
    path: str | os.PathLike[str], device: str = "cpu"
) -> tuple[AlexNet, Config, checkpoint.TrainingState]:
    """``(net, config, state)`` for a command: the network rebuilt from a checkpoint file
    (or a run directory's best.h5, else its newest valid checkpoint) with its options and
    parameters, on ``device``'s backend; the run's ``TrainConfig`` (its backend this one)
    and the ``refnet.checkpoint.TrainingState``. The errors are ``UserError``s naming the
    file: a checkpoint that cannot be used (unreadable, a stored option refused,
    parameters of the wrong names, shapes or dtype, or not finite:
    ``refnet.checkpoint.read_state``), a device that is not there."""
    state = checkpoint.read_state(path)
    try:
        backend_name = backend_for_device(device)
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        cfg = TrainConfig.from_dict(state.config, device=device, backend=backend_name)
        options = NetOptions.from_dict(state.network, backend=backend_name, devices=None)
        net = build_network(options)
        net.load_state_dict(state.model)
    except (ValueError, KeyError, TypeError) as e:
        raise checkpoint.CheckpointError(f"checkpoint {path}: {e}") from None
    return net, cfg, state


EXIT_CODES = {
    0: "evaluated",
    2: "a bad option value, or a checkpoint or data directory that cannot be "
    "used (one line says which)",
}


def build_parser() -> Parser:
    p = Parser(
        prog="python -m refnet.evaluate",
        exit_codes=EXIT_CODES,
        description="Top-1 and top-5 validation error of a checkpoint, with the centre "
        "crop and with the paper's 10 crops.",
    )
    add_network_arguments(p)
    add_data_argument(p)
    p.add_argument(
        "--views",
        choices=("center", "ten", "both"),
        default="both",
        help="centre crop, the paper's 10 crops, or both (default both)",
    )
    p.add_argument(
        "--batch",
        type=positive_int,
        default=64,
        help="validation images per forward pass (default 64)",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object (default: one line per view)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> None:
        net, cfg, _ = load_network(args.checkpoint, args.device)
        pipeline = open_data(net, cfg, args.data)
        try:
            views = ("center", "ten") if args.views == "both" else (args.views,)
            results = {v: evaluate(net, pipeline, views=v, batch=args.batch) for v in views}
        finally:
            pipeline.close()
        if args.json:
            print(json.dumps(results))
            return
        for v, r in results.items():
            name = "10 crops" if v == "ten" else "centre crop"
            print(
                f"{name:12s} top-1 error {100 * r['top1']:.2f}%  top-5 error "
                f"{100 * r['top5']:.2f}%  ({r['n']} images)"
            )

    return exit_status("refnet.evaluate", body)


if __name__ == "__main__":
    sys.exit(run_command(main, "refnet.evaluate"))
