"""``python -m refnet.neighbors``: the paper's Figure 4, the nearest training images by fc7.

    python -m refnet.neighbors --checkpoint RUN_DIR [--out grid.png] [--images IMG ...]

For each query (the given image files, or ``--count`` images spread over the validation
set) one row of the grid: the query's centre crop, its top-5 classes as bars, and the 6
training images whose fc7 features (the output of fc7's ReLU in eval mode, the last
hidden layer: ``AlexNet.features``) are nearest in Euclidean distance, with their class
names and distances. Image files are preprocessed as ``refnet.predict`` does (the bars
average the paper's 10 crops; the features are the centre crop's); training images are
seen through their centre crop.

The grid goes to ``--out``, by default ``neighbors.png`` in the run folder (the folder
given as ``--checkpoint``, or the folder of the checkpoint file); the path written is
printed.

The search reads the whole training store in batches and keeps only a running top-6 per
query (``NearestSearch``), so the training set's features are never all in memory.

Exit status: 0 the grid was written, 2 for a bad option or a checkpoint, data directory
or image that cannot be used (one line says which), 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy

from refnet.config import UsageError
from refnet.data.cli import (
    Parser,
    UserError,
    existing_file,
    exit_status,
    positive_int,
    run_command,
)
from refnet.data.decode import BadImage, decode_image
from refnet.data.progress import Progress
from refnet.data.store import StoreReader
from refnet.evaluate import (
    add_data_argument,
    add_network_arguments,
    load_network,
    open_data,
    predict_views,
)
from refnet.layers import backend
from refnet.layers.backend import Array
from refnet.predict import preprocess

if TYPE_CHECKING:
    from refnet.checkpoint import TrainingState
    from refnet.network import AlexNet
    from refnet.train_inputs import InputPipeline

NEIGHBORS = 6  # training images per query, as in the paper's figure
FIGURE = "neighbors.png"  # the grid's name in the run folder when no --out is given
TOP = 5  # classes drawn as bars

Queries = tuple[
    numpy.ndarray, numpy.ndarray, Sequence[numpy.ndarray], Sequence[str], Sequence[str | None]
]
"""What ``file_queries`` and ``validation_queries`` give: features (Q, F), probabilities
(Q, K), pictures [(Cr, Cr, 3) uint8], captions and true class names (None: unknown)."""


class NearestSearch:
    """The running ``k`` nearest of a stream of feature batches to fixed queries.

    Axis legend: Q queries, B batch, F features. ``add(feats (B, F), indices (B,))``
    merges a batch into the best so far; ``dist`` (Q, k) and ``index`` (Q, k) hold the
    distances (ascending) and the stream's indices of the nearest. Distances are
    computed as ||f - q|| in float64 on the host; a tie keeps the earlier index, so the
    result equals one stable sort of all distances at once, whatever the batches.
    """

    def __init__(self, queries: Array, k: int = NEIGHBORS) -> None:
        self.queries = numpy.asarray(backend.asnumpy(queries), dtype=numpy.float64)  # (Q, F)
        self.k = int(k)
        q = len(self.queries)
        self.dist = numpy.empty((q, 0))  # (Q, <= k)
        self.index = numpy.empty((q, 0), dtype=numpy.int64)  # (Q, <= k)

    def add(self, feats: Array, indices: numpy.ndarray) -> None:
        feats = numpy.asarray(backend.asnumpy(feats), dtype=numpy.float64)  # (B, F)
        if feats.ndim != 2 or feats.shape[1] != self.queries.shape[1]:
            raise ValueError(
                f"NearestSearch.add: features must be (B, "
                f"{self.queries.shape[1]}), got {feats.shape}"
            )
        d = numpy.stack(
            [numpy.sqrt(((feats - q) ** 2).sum(axis=1)) for q in self.queries]
        )  # (Q, B)
        dist = numpy.concatenate([self.dist, d], axis=1)  # (Q, k + B): best first
        index = numpy.concatenate(
            [self.index, numpy.broadcast_to(numpy.asarray(indices, numpy.int64), d.shape)], axis=1
        )
        order = numpy.argsort(dist, axis=1, kind="stable")[:, : self.k]  # (Q, k)
        self.dist = numpy.take_along_axis(dist, order, axis=1)
        self.index = numpy.take_along_axis(index, order, axis=1)


def search_training_set(
    net: AlexNet,
    pipeline: InputPipeline,
    queries: Array,
    k: int = NEIGHBORS,
    batch: int = 64,
    progress: bool = True,
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """(distances (Q, k), training-store indices (Q, k)) of the ``k`` training images
    nearest to ``queries`` (Q, F) by the features of their centre crops."""
    search = NearestSearch(queries, k)
    with StoreReader(pipeline.train_path) as store:
        n = store.count
        bar = Progress(total=n, desc="fc7 neighbours", unit="img", enabled=progress)
        for start in range(0, n, batch):
            idx = numpy.arange(start, min(start + batch, n))
            views = pipeline.eval_views(store.take(idx), "center")  # (B, 3, Cr, Cr)
            search.add(net.features(views), idx)
            bar.update(len(idx))
        bar.close()
    return search.dist, search.index


def _centre(image: numpy.ndarray, crop: int) -> numpy.ndarray:
    """The centre crop (Cr, Cr, 3) of a stored image (S, S, 3), as the network sees it."""
    o = (image.shape[0] - crop) // 2
    return image[o : o + crop, o : o + crop]


class QueryImageError(UserError):
    """A query image that cannot be used; the message names its path and the reason."""


def file_queries(net: AlexNet, state: TrainingState, paths: Sequence[str]) -> Queries:
    """(features (Q, F), probabilities (Q, K), pictures [(Cr, Cr, 3) uint8], captions,
    true class names or None); ``state``: the checkpoint's ``TrainingState``. An image
    that cannot be read raises ``QueryImageError`` naming it (a grid with a row
    missing would hide it)."""
    inputs = cast("dict[str, Any]", state.inputs)  # the preprocessing record (main checks it)
    feats, probs, pictures = [], [], []
    for path in paths:
        try:
            image = decode_image(path, int(inputs["store_size"]))  # (S, S, 3)
        except (BadImage, OSError) as e:
            raise QueryImageError(f"image {path}: {e}") from None
        probs.append(predict_views(net, preprocess(path, inputs, "ten"))[0])  # (K,)
        feats.append(backend.asnumpy(net.features(preprocess(path, inputs, "center"))))
        pictures.append(_centre(image, int(inputs["crop"])))
    captions = [os.path.basename(p) for p in paths]
    truth = [None] * len(paths)  # unknown
    return numpy.concatenate(feats), numpy.stack(probs), pictures, captions, truth


def validation_queries(net: AlexNet, pipeline: InputPipeline, count: int) -> Queries:
    """The same for ``count`` validation images spread evenly over the store's order."""
    with StoreReader(pipeline.val_path) as val:
        if count > val.count:
            raise UsageError(f"--count {count} is more than the {val.count} validation images")
        idx = numpy.linspace(0, val.count - 1, count).round().astype(numpy.int64)
        images, labels = val.take(idx), val.labels[idx]  # (Q, S, S, 3)
    probs = predict_views(net, pipeline.eval_views(images, "ten"))  # (Q, K)
    feats = backend.asnumpy(net.features(pipeline.eval_views(images, "center")))
    pictures = [_centre(im, pipeline.crop) for im in images]
    truth = [pipeline.class_names[y] for y in labels]
    captions = [f"val {i}: {name}" for i, name in zip(idx, truth, strict=True)]
    return feats, probs, pictures, captions, truth


def figure_rows(
    pipeline: InputPipeline, queries: Queries, dist: numpy.ndarray, index: numpy.ndarray
) -> list[dict[str, Any]]:
    """What ``refnet.plots.plot_neighbors`` draws, one dict per query."""
    _, probs, pictures, captions, truth = queries
    names = pipeline.class_names
    with StoreReader(pipeline.train_path) as store:
        labels = store.labels
        rows = []
        for q in range(len(pictures)):
            top = numpy.argsort(-probs[q], kind="stable")[:TOP]
            thumbs = store.take(index[q])  # (k, S, S, 3)
            rows.append(
                {
                    "image": pictures[q],
                    "caption": captions[q],
                    "label": truth[q],
                    "top": [(names[c], float(probs[q][c])) for c in top],
                    "neighbors": [
                        (_centre(t, pipeline.crop), names[labels[i]], float(d))
                        for t, i, d in zip(thumbs, index[q], dist[q], strict=True)
                    ],
                }
            )
    return rows


def default_figure(checkpoint_arg: str) -> str:
    """Where the grid goes without ``--out``: ``FIGURE`` in the run folder (the folder
    ``--checkpoint`` names, or the folder of the checkpoint file it names)."""
    folder = checkpoint_arg if os.path.isdir(checkpoint_arg) else os.path.dirname(checkpoint_arg)
    return os.path.join(folder or ".", FIGURE)


def png_path(text: str) -> str:
    """``--out``: a file name in an existing folder (an ``argparse`` type)."""
    folder = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"the folder of {text!r} does not exist")
    return text


EXIT_CODES = {
    0: "the grid was written",
    2: "a bad option value, or a checkpoint, data directory or image that "
    "cannot be used (one line says which)",
}


def build_parser() -> Parser:
    p = Parser(
        prog="python -m refnet.neighbors",
        exit_codes=EXIT_CODES,
        description="The paper's Figure 4: for each query image its top-5 classes and "
        f"the {NEIGHBORS} training images nearest to it in fc7 feature space "
        "(Euclidean), as one PNG grid.",
    )
    add_network_arguments(p)
    queries = p.add_mutually_exclusive_group()
    queries.add_argument(
        "--images",
        nargs="+",
        metavar="IMG",
        type=existing_file,
        help="query image files (default: --count validation images)",
    )
    queries.add_argument(
        "--count",
        type=positive_int,
        default=5,
        help="validation images spread over the validation set, as "
        "queries when no --images are given (default 5)",
    )
    add_data_argument(p)
    p.add_argument(
        "--batch",
        type=positive_int,
        default=64,
        help="training images per forward pass (default 64)",
    )
    p.add_argument(
        "--out",
        type=png_path,
        metavar="PNG",
        help=f"where to write the grid (default: {FIGURE} in the run folder of --checkpoint)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    from refnet.plots import plot_neighbors

    args = build_parser().parse_args(argv)

    def body() -> None:
        net, cfg, state = load_network(args.checkpoint, args.device)
        pipeline = open_data(net, cfg, args.data)
        try:
            if args.images:
                if state.inputs is None:
                    raise UsageError(f"{args.checkpoint} holds no preprocessing record")
                found = file_queries(net, state, args.images)
            else:
                found = validation_queries(net, pipeline, args.count)
            dist, index = search_training_set(
                net, pipeline, found[0], batch=args.batch, progress=not args.quiet
            )
            rows = figure_rows(pipeline, found, dist, index)
        finally:
            pipeline.close()
        out = args.out or default_figure(args.checkpoint)
        plot_neighbors(rows, out)
        print(f"wrote {out}")

    return exit_status("refnet.neighbors", body)


if __name__ == "__main__":
    sys.exit(run_command(main, "refnet.neighbors"))
