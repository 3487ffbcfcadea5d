"""Image folders as a user has them, for the own-images tests: class folders of shapes
(the demo's renderer) in several sizes, aspect ratios and colour modes (RGB, grayscale,
RGBA, palette), with or without a train/val split."""

import numpy
from PIL import Image

from refnet.data.demo import CLASSES, render

MODES = ("RGB", "L", "RGBA", "P")


def write_image_tree(root, *, classes=3, per_class=12, sizes=(24, 40, 80), split=False, seed=0):
    """``root/<class>/<i>.<ext>`` (or ``root/train|val/<class>/...`` with ``split``: a
    quarter in val); sizes and modes cycle over the images. Returns the file count."""
    rng = numpy.random.default_rng(seed)
    count = 0
    for k in range(classes):
        for i in range(per_class):
            side = sizes[i % len(sizes)]
            w, h = side, int(side * (1.0, 1.5, 0.75)[i % 3])  # mixed aspects
            img = Image.fromarray(render(k, rng, w, h))
            mode = MODES[(i + k) % len(MODES)]
            img = img.convert(mode) if mode != "P" else img.convert("P", palette=1)
            part = ("val" if i % 4 == 3 else "train") if split else ""
            folder = root / part / CLASSES[k]
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{i}.{'png' if mode in ('RGBA', 'P') else 'jpg'}")
            count += 1
    return count


FLAT_KINDS = ("channel", "constant", "one-colour-class", "gray-rgb")


def write_flat_tree(root, kind, *, classes=2, per_class=12, side=24, seed=0):
    """``root/<class>/<i>.png`` whose pixel statistics have a zero (or tiny) std:
    "channel": RGBA images whose blue channel is 0 everywhere; "constant": every pixel of
    every image the same grey; "one-colour-class": class 0 one flat colour, the others
    shapes; "gray-rgb": grayscale shapes saved as RGB (three equal channels). Returns
    the file count."""
    rng = numpy.random.default_rng(seed)
    count = 0
    for k in range(classes):
        folder = root / CLASSES[k]
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = render(k, rng, side, side)  # (side, side, 3) uint8
            if kind == "channel":
                rgba = numpy.dstack([shape, numpy.full((side, side), 255, numpy.uint8)])
                rgba[..., 2] = 0
                img = Image.fromarray(rgba, "RGBA")
            elif kind == "constant":
                img = Image.fromarray(numpy.full((side, side, 3), 77, numpy.uint8))
            elif kind == "one-colour-class":
                flat = numpy.full((side, side, 3), (200, 30, 90), numpy.uint8)
                img = Image.fromarray(flat if k == 0 else shape)
            elif kind == "gray-rgb":
                img = Image.fromarray(shape).convert("L").convert("RGB")
            else:
                raise ValueError(f"kind must be one of {FLAT_KINDS}, got {kind!r}")
            img.save(folder / f"{i}.png")
            count += 1
    return count
