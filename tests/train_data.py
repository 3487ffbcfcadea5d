"""A tiny class-folder image set built with ``data.build``, for the training CLI tests.

Classes differ by shape (a bright square, disk, bar, ...) on noise, so a few steps of
SGD lower the loss. Images are written as JPEG and PNG, then stored at 52x52 (the
``tiny`` arch's stored size).
"""

import subprocess
import sys

import numpy
from PIL import Image

from refnet import checkpoint
from refnet.data.build import build

CLASSES = ("bar", "corner", "disk", "ring", "square")


def _image(rng, kind, side=64):
    yy, xx = numpy.mgrid[:side, :side]
    c = side / 2 + rng.uniform(-6, 6, 2)
    r = numpy.hypot(yy - c[0], xx - c[1])
    mask = {
        "bar": abs(xx - c[1]) < 5,
        "corner": (yy < side / 3) & (xx < side / 3),
        "disk": r < 14,
        "ring": (r > 10) & (r < 16),
        "square": (abs(yy - c[0]) < 12) & (abs(xx - c[1]) < 12),
    }[kind]
    img = rng.integers(0, 90, (side, side, 3))
    img[mask] = rng.integers(160, 256, 3)
    return Image.fromarray(img.astype(numpy.uint8))


def make_tiny_set(root, per_class=(8, 3), seed=0, size=52):
    """Write SRC under ``root/src`` and build it into ``root/data``; returns the data dir."""
    rng = numpy.random.default_rng(seed)
    src = root / "src"
    for split, n in zip(("train", "val"), per_class, strict=True):
        for kind in CLASSES:
            d = src / split / kind
            d.mkdir(parents=True)
            for i in range(n):
                ext = "jpg" if i % 2 else "png"
                _image(rng, kind).save(d / f"{i}.{ext}")
    out = root / "data"
    build(str(src), str(out), size=size, workers=0, progress=False)
    return out


def trained_tiny_run(root, *flags):
    """Build the tiny set under ``root``, train the ``tiny`` arch on it in a subprocess
    with ``flags``; returns (data dir, path of the newest checkpoint)."""
    data = make_tiny_set(root, per_class=(8, 3))
    out = root / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "refnet.train",
            "--data",
            str(data),
            "--arch",
            "tiny",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--quiet",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return data, checkpoint.list_checkpoints(out)[-1][1]
