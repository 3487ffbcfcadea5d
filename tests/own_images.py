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
