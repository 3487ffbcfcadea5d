"""A small synthetic image-classification set that needs spatial features, built and cached.

    out_dir = ensure_demo()            # -> directory holding train.h5 and val.h5 (S = 80)
    write_demo_tree(root, *, train_per_class=150, val_per_class=30, seed=0, threads=None)
    render(class_index, rng, width, height) -> (H, W, 3) uint8

Ten classes, told apart only by shape or structure:

    0 circle   1 square   2 triangle   3 cross   4 ring   5 star
    6 horizontal bars   7 vertical bars   8 checkerboard   9 diagonal stripes

Every image draws its own background and foreground colours (uniform in RGB, at least
120 levels apart), a mild background gradient, the object's size (radius 34-40% of the
shorter side), position (inside the central square that the build's centre crop keeps,
with room for a 71 crop of 80), rotation (+-10 degrees: the striped classes' orientation
is what defines them) and Gaussian noise (sigma 3). Mean colour therefore carries almost
no class information: a linear classifier on it sits near chance (tested), so a network
has to learn shapes. The shapes are drawn 2x2 supersampled (smooth edges).

The difficulty is set for the default ``python -m refnet.train`` (docs/performance.md,
"The demo's defaults"): square and circle, cross and star are the pairs a short run
confuses, so the square's corners reach 0.85 of the radius, the cross's arms are 0.34
wide and the star's notches reach in to 0.38.

Files are JPEGs (quality 80-95) of varying size (shorter side 80-100) and aspect ratio
(3:4 to 4:3) in the class-folder layout, SRC/{train,val}/<class>/<class>_<i>.jpg, and go
through ``data.build`` at size 80 (``DEMO_SIZE``). Every image has its own generator
seeded by (seed, split, class, index), so the set is deterministic.

``ensure_demo`` caches the built store under ``$REFNET_CACHE/demo`` (default
``~/.cache/refnet/demo``) in a folder named by ``DEMO_VERSION``; changing the generator
means bumping ``DEMO_VERSION``, which makes the next call rebuild (``data.cache.cached``:
never a half-built cache, whatever runs concurrently or is interrupted).
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil

import numpy
from PIL import Image

from refnet.data.build import build
from refnet.data.cache import cache_root, cached
from refnet.data.progress import Progress

DEMO_VERSION = 3
DEMO_SIZE = 80
DEMO_CROP = 71
CLASSES = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "star",
    "horizontal_bars",
    "vertical_bars",
    "checkerboard",
    "diagonal_stripes",
)
SPLITS = {"train": 0, "val": 1}


def _mask(cls: int, u: numpy.ndarray, v: numpy.ndarray):
    """Boolean mask of class ``cls`` in object coordinates (radius 1, v pointing up)."""
    au, av = numpy.abs(u), numpy.abs(v)
    if cls == 0:
        return u * u + v * v <= 1.0
    if cls == 1:
        return (au <= 0.85) & (av <= 0.85)
    if cls == 2:
        return (v >= -0.5) & (v <= 1.0 - numpy.sqrt(3.0) * au)
    if cls == 3:
        arm = 0.34
        return ((au <= arm) & (av <= 0.95)) | ((av <= arm) & (au <= 0.95))
    if cls == 4:
        rr = u * u + v * v
        return (rr >= 0.55**2) & (rr <= 1.0)
    if cls == 5:
        t = numpy.mod(numpy.arctan2(v, u) * (5.0 / (2.0 * numpy.pi)), 1.0)
        return numpy.hypot(u, v) <= 0.38 + 0.62 * numpy.abs(1.0 - 2.0 * t)
    inside = (au <= 0.9) & (av <= 0.9)
    if cls == 6:
        return inside & (numpy.floor((v + 0.9) / 0.3) % 2 == 0)
    if cls == 7:
        return inside & (numpy.floor((u + 0.9) / 0.3) % 2 == 0)
    if cls == 8:
        return inside & ((numpy.floor((u + 0.9) / 0.45) + numpy.floor((v + 0.9) / 0.45)) % 2 == 0)
    if cls == 9:
        return inside & (numpy.floor((u + v + 4.0) / 0.35) % 2 == 0)
    raise ValueError(f"render: class must be in 0..{len(CLASSES) - 1}, got {cls}")


def render(cls: int, rng: numpy.random.Generator, width: int, height: int) -> numpy.ndarray:
    """One (H, W, 3) uint8 image of class ``cls`` (random parameters from ``rng``)."""
    m = min(width, height)
    r = rng.uniform(0.34, 0.40) * m
    room = max(0.0, m / 2 - r - 0.06 * m)
    cx = width / 2 + rng.uniform(-1, 1) * room
    cy = height / 2 + rng.uniform(-1, 1) * room
    theta = rng.uniform(-numpy.pi / 18, numpy.pi / 18)  # +-10 degrees
    c, s = numpy.cos(theta), numpy.sin(theta)
    # 2x2 supersampling for smooth edges: the mask on the grid of sub-pixel centres
    # (offsets 0.25 and 0.75), averaged over each pixel's four
    ys = (numpy.arange(2 * height, dtype=numpy.float32)[:, None] + 0.5) / 2  # (2H, 1)
    xs = (numpy.arange(2 * width, dtype=numpy.float32)[None, :] + 0.5) / 2  # (1, 2W)
    x, y = xs - numpy.float32(cx), numpy.float32(cy) - ys  # y up
    u = (numpy.float32(c) * x + numpy.float32(s) * y) / numpy.float32(r)  # (2H, 2W)
    v = (numpy.float32(-s) * x + numpy.float32(c) * y) / numpy.float32(r)
    inside = _mask(cls, u, v).view(numpy.uint8)  # (2H, 2W), 0 or 1
    count = inside[0::2, 0::2] + inside[0::2, 1::2] + inside[1::2, 0::2] + inside[1::2, 1::2]
    cover = count.astype(numpy.float32) * numpy.float32(0.25)  # (H, W), 0 to 1
    bg = rng.uniform(0, 255, 3)
    while True:
        fg = rng.uniform(0, 255, 3)
        if numpy.linalg.norm(fg - bg) >= 120:
            break
    g = rng.uniform(-10, 10, 2) / m
    rows = numpy.arange(height, dtype=numpy.float32)[:, None] - numpy.float32(height / 2)
    cols = numpy.arange(width, dtype=numpy.float32)[None, :] - numpy.float32(width / 2)
    gradient = numpy.float32(g[0]) * cols + numpy.float32(g[1]) * rows  # (H, W)
    # background plus gradient where uncovered, foreground where covered, plus noise
    img = rng.standard_normal((height, width, 3), dtype=numpy.float32)
    img *= numpy.float32(3.0)
    img += (bg.astype(numpy.float32) + gradient[:, :, None]) * (1 - cover)[:, :, None]
    img += fg.astype(numpy.float32) * cover[:, :, None]
    return numpy.clip(numpy.rint(img), 0, 255).astype(numpy.uint8)


def write_demo_tree(
    root: str,
    *,
    train_per_class: int = 150,
    val_per_class: int = 30,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = None,
) -> int:
    """Write the JPEG class-folder tree under ``root``; returns the number of files.

    ``threads`` draw and save the images (None: one per CPU, at most 2; 1: this thread
    alone). NumPy and Pillow release Python's lock for much of each image: two threads
    draw the demo's 1,800 in about three quarters of one's time (2.2-2.4 s against
    3.0-3.3 s, 2 cores). Every image comes from its own generator, so the files are the
    same whatever the threads."""
    jobs = []
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for cls, name in enumerate(CLASSES):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            jobs += [
                (os.path.join(folder, f"{name}_{i:04d}.jpg"), seed, split, cls, i) for i in range(n)
            ]
    bar = Progress(total=len(jobs), desc="demo: drawing images", unit="img", enabled=progress)
    threads = min(2, os.cpu_count() or 1) if threads is None else threads
    if threads <= 1:
        for job in jobs:
            _write_image(*job)
            bar.update(1)
    else:
        pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="demo-draw")
        try:  # Ctrl-C (in this thread) drops the images not started yet
            for done in concurrent.futures.as_completed(
                [pool.submit(_write_image, *j) for j in jobs]
            ):
                done.result()
                bar.update(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
    return len(jobs)


def _write_image(path: str, seed: int, split: str, cls: int, i: int) -> None:
    rng = numpy.random.default_rng([seed, SPLITS[split], cls, i])
    short = int(rng.integers(DEMO_SIZE, DEMO_SIZE * 5 // 4 + 1))
    aspect = rng.uniform(0.75, 4 / 3)
    w, h = (short, round(short * aspect)) if aspect >= 1 else (round(short / aspect), short)
    img = render(cls, rng, w, h)
    quality = int(rng.integers(80, 96))
    Image.fromarray(img).save(path, quality=quality)


def default_cache_dir() -> str:
    """``$REFNET_CACHE/demo``, or ``~/.cache/refnet/demo``."""
    return os.path.join(cache_root(), "demo")


def ensure_demo(
    cache_dir: str | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
    train_per_class: int = 150,
    val_per_class: int = 30,
) -> str:
    """Build the demo store once (cached, ``data.cache``) and return the directory with
    train.h5 and val.h5."""
    root = cache_dir if cache_dir is not None else default_cache_dir()
    stamp = {
        "version": DEMO_VERSION,
        "size": DEMO_SIZE,
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "classes": list(CLASSES),
    }
    if workers is None:
        workers = min(2, os.cpu_count() or 1)

    def make(out: str) -> None:
        src = out + "-src"
        try:
            write_demo_tree(
                src, train_per_class=train_per_class, val_per_class=val_per_class, progress=progress
            )
            build(src, out, size=DEMO_SIZE, workers=workers, progress=progress)
        finally:
            shutil.rmtree(src, ignore_errors=True)

    return cached(
        os.path.join(root, f"v{DEMO_VERSION}-{train_per_class}-{val_per_class}"), stamp, make
    )
