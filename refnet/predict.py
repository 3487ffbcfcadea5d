"""``python -m refnet.predict``: the top-5 classes of image files, from a checkpoint.

    python -m refnet.predict --checkpoint RUN_DIR/ckpt-00001234.h5 photo.jpg other.png
    python -m refnet.predict --checkpoint RUN_DIR photo.jpg   # best.h5, else the newest

Each image goes through the dataset's own preprocessing (``data.decode.decode_image``:
decode, EXIF orientation, RGB, shorter side to the stored size S, centre crop S x S),
then the training set's mean image is subtracted (and the pixel-std scaling applied when
the run used it: the factors stored with the run, ``data.pixel_stats.input_scale``) on
the 10 crops of the paper's test, whose softmax outputs are averaged (``--views center``
for the single centre crop). The mean image, pixel std and class names are stored in the
checkpoint, so the data set is not needed.

Exit status: 0 every image classified, 1 some image could not be read (the others are
still classified), 2 for a bad option or a checkpoint that cannot be used, 130 when
interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy

from refnet.config import UsageError
from refnet.data import views as crops
from refnet.data.cli import Parser, exit_status, positive_int, run_command
from refnet.data.decode import BadImage, decode_image
from refnet.evaluate import add_network_arguments, load_network, predict_views

if TYPE_CHECKING:
    from refnet.checkpoint import TrainingState
    from refnet.network import AlexNet


def preprocess(path: str, inputs: Mapping[str, Any], views: str = "ten") -> numpy.ndarray:
    """The network's input for one image file: (1, 3, Cr, Cr) or (10, 1, 3, Cr, Cr)."""
    size = int(inputs["store_size"])
    img = decode_image(path, size)[None]  # (1, S, S, 3) uint8
    mean = numpy.asarray(inputs["mean_image"])
    scale = inputs.get("scale")
    scale = None if scale is None else numpy.asarray(scale)
    fn = crops.ten_views if views == "ten" else crops.center_view
    return fn(img, mean, int(inputs["crop"]), scale=scale, dtype=inputs["dtype"])


def predict(
    net: AlexNet,
    state: TrainingState,
    paths: Iterable[str],
    views: str = "ten",
    top: int = 5,
) -> list[tuple[str, list[tuple[str, float]]]]:
    """``[(path, [(class name, probability), ...])]`` for each image file; ``state``: the
    checkpoint's ``TrainingState`` (its preprocessing record)."""
    inputs = cast("dict[str, Any]", state.inputs)  # the preprocessing record (main checks it)
    names = list(inputs["class_names"])
    out = []
    for path in paths:
        probs = predict_views(net, preprocess(path, inputs, views))[0]  # (K,)
        order = numpy.argsort(-probs, kind="stable")[:top]
        out.append((path, [(names[k], float(probs[k])) for k in order]))
    return out


EXIT_CODES = {
    0: "every image was classified",
    1: "some image could not be read (the others are still classified)",
    2: "a bad option value, or a checkpoint that cannot be used (one line says which)",
}


def build_parser() -> Parser:
    p = Parser(
        prog="python -m refnet.predict",
        exit_codes=EXIT_CODES,
        description="Top-5 class names and probabilities for image files, with the "
        "dataset's preprocessing and the paper's 10-crop averaging.",
    )
    add_network_arguments(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    p.add_argument(
        "--views",
        choices=("center", "ten"),
        default="ten",
        help="the centre crop, or the paper's 10 crops averaged (default ten)",
    )
    p.add_argument(
        "--top", type=positive_int, default=5, help="classes shown per image (default 5)"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per image (default: a few text lines)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        net, _cfg, state = load_network(args.checkpoint, args.device)
        if state.inputs is None:
            raise UsageError(f"{args.checkpoint} holds no preprocessing record")
        status = 0
        for path in args.images:
            try:
                [(_, top)] = predict(net, state, [path], views=args.views, top=args.top)
            except (BadImage, OSError) as e:
                print(f"refnet.predict: error: {path}: {e}", file=sys.stderr)
                status = 1
                continue
            if args.json:
                print(json.dumps({"image": path, "top": [[n, p] for n, p in top]}))
            else:
                print(path)
                for name, prob in top:
                    print(f"  {prob:7.2%}  {name}")
        return status

    return exit_status("refnet.predict", body)


if __name__ == "__main__":
    sys.exit(run_command(main, "refnet.predict"))
