"""Benchmark of the data pipeline: ``python -m refnet.bench.data [--json FILE]``.

Measures, on generated data in a temporary folder:

- build speed: images/s of ``data.build`` on ImageNet-sized JPEGs (500x375 and 375x500,
  quality 90, smooth random content plus noise; two classes, a fifth of the files in
  val/), with 1 worker process (= per core) and with one per CPU; target >= 100
  images/s per core;
- loader speed: batches/s of ``data.loader.Loader`` at batch 128 for S = 256 (a store of
  random images written directly), shuffled, with 0 and 2 threads;
- augmentation: seconds per batch of ``train_views`` (128 images, 227 crops, NumPy,
  float32) and of ``ten_views``, for comparison with a training step.

Timings exclude process start-up of the build's pool only where said; they are wall-clock
on whatever else the machine is doing, so run it on an idle machine.

Exit status: 0 when measured, 2 for a bad option value, 130 when interrupted (Ctrl-C:
the temporary folder is removed and no JSON is written).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Sequence

import numpy
from PIL import Image

from refnet.data import augment
from refnet.data import views as crops
from refnet.data.build import build
from refnet.data.cli import Parser, int_at_least, positive_int, run_command
from refnet.data.files import write_json
from refnet.data.loader import Loader
from refnet.data.progress import Progress
from refnet.data.store import StoreWriter


def write_jpegs(root: str, count: int, seed: int = 0, progress: bool = True) -> None:
    """``count`` (>= 10) ImageNet-sized JPEGs in a two-class folder tree under ``root``,
    one in five in the validation split."""
    rng = numpy.random.default_rng(seed)
    bar = Progress(total=count, desc="bench: writing JPEGs", unit="img", enabled=progress)
    for i in range(count):
        split = "val" if i % 10 >= 8 else "train"
        folder = os.path.join(root, split, f"c{i % 2}")
        os.makedirs(folder, exist_ok=True)
        w, h = (500, 375) if i % 3 else (375, 500)
        small = rng.integers(0, 256, (8, 8, 3), dtype=numpy.uint8)
        img = numpy.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))
        img = numpy.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(numpy.uint8)
        Image.fromarray(img).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)
        bar.update(1)
    bar.close()


def bench_build(tmp: str, count: int, workers: int, progress: bool) -> float:
    src = os.path.join(tmp, "src")
    if not os.path.isdir(src):
        write_jpegs(src, count, progress=progress)
    out = os.path.join(tmp, f"out{workers}")
    t = time.perf_counter()
    build(src, out, size=256, workers=workers, progress=progress)
    return count / (time.perf_counter() - t)


def bench_loader(
    tmp: str, images: int, batch: int, workers: int, epochs: int, progress: bool
) -> float:
    path = os.path.join(tmp, "loader", "train.h5")
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        rng = numpy.random.default_rng(0)
        w = StoreWriter(
            os.path.dirname(path),
            "train.h5",
            capacity=images,
            size=256,
            split="train",
            class_names=["a", "b"],
            wnids=None,
            build_id="bench",
            settings={},
        )
        block = rng.integers(0, 256, (16, 256, 256, 3), dtype=numpy.uint8)
        for i in range(images):
            w.append(block[i % 16], i % 2, f"{i}.jpg")
        w.set_stats(numpy.zeros((256, 256, 3)), numpy.ones(3), numpy.eye(3), numpy.ones(3))
        w.finish()
        w.commit()
    loader = Loader(path, batch, workers=workers, seed=1)
    n = 0
    t = time.perf_counter()
    for _ in range(epochs):
        for _images, _labels in loader:
            n += 1
    return n / (time.perf_counter() - t)


def bench_augment(repeats: int = 5) -> tuple[float, float]:
    rng = numpy.random.default_rng(0)
    images = rng.integers(0, 256, (128, 256, 256, 3), dtype=numpy.uint8)
    mean = rng.uniform(0, 255, (256, 256, 3))
    eigvec = numpy.linalg.qr(rng.standard_normal((3, 3)))[0]
    eigval = numpy.array([14000.0, 400.0, 60.0])
    augment.train_views(images, augment.draw(rng, 128, 256, 227), mean, eigval, eigvec, 227)
    t = time.perf_counter()
    for _ in range(repeats):
        augment.train_views(images, augment.draw(rng, 128, 256, 227), mean, eigval, eigvec, 227)
    train = (time.perf_counter() - t) / repeats
    t = time.perf_counter()
    crops.ten_views(images, mean, 227)
    ten = time.perf_counter() - t
    return train, ten


EXIT_CODES = {
    0: "measured (and the JSON written when asked)",
    2: "a bad option value (one line names it)",
}


def build_parser() -> Parser:
    ap = Parser(
        prog="python -m refnet.bench.data",
        description=__doc__.split("\n")[0],
        exit_codes=EXIT_CODES,
    )
    ap.add_argument(
        "--images",
        type=int_at_least(10),
        default=300,
        help="JPEGs for the build benchmark, at least 10 (default 300)",
    )
    ap.add_argument(
        "--store-images",
        type=int_at_least(128),
        default=1024,
        help="images in the loader store, at least one batch of 128 (default 1024)",
    )
    ap.add_argument(
        "--epochs", type=positive_int, default=3, help="loader epochs to time (default 3)"
    )
    ap.add_argument(
        "--json",
        metavar="PATH",
        help="also write the results to this JSON file (default: printed only)",
    )
    ap.add_argument(
        "--quiet", action="store_true", help="no progress bars (default: progress bars on stderr)"
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = not args.quiet
    cpus = os.cpu_count() or 1
    results: dict[str, float] = {"cpus": cpus}
    with tempfile.TemporaryDirectory(prefix="refnet-data-bench-") as tmp:
        results["build_images_per_s_1_worker"] = bench_build(tmp, args.images, 1, progress)
        results["build_images_per_s_0_workers_in_process"] = bench_build(
            tmp, args.images, 0, progress
        )
        results[f"build_images_per_s_{cpus}_workers"] = bench_build(
            tmp, args.images, cpus, progress
        )
        for workers in (0, 2):
            results[f"loader_batches_per_s_b128_s256_{workers}_threads"] = bench_loader(
                tmp, args.store_images, 128, workers, args.epochs, progress
            )
    train, ten = bench_augment()
    results["train_views_s_per_batch_128x227_numpy"] = train
    results["ten_views_s_per_batch_128x227_numpy"] = ten
    for k, v in results.items():
        print(f"{k:55s} {v:10.3f}" if isinstance(v, float) else f"{k:55s} {v:10d}")
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "refnet.bench.data"))
