"""Build the HDF5 store from an image tree: ``python -m data.build SRC OUT_DIR``.

    python -m data.build SRC OUT_DIR [--size 256] [--workers N] [--max-pixels P]
                                     [--no-jpeg-draft] [--quiet]
    build(src, out_dir, *, size=256, workers=None, ...) -> BuildSummary

SRC layouts are described in ``data.sources``; each file is decoded by
``data.decode.decode_image`` in worker processes (each opens its own files; results come
back in file order, so a build is deterministic whatever the number of workers); the
format written is described in ``data.store``.

Bad input is never fatal: every file that cannot be used is listed with its reason in
``OUT_DIR/build_report.json`` and summarised at the end. Exit status: 0 when a training
set was written (even with skipped files), 1 when no usable training image was found,
2 for an unreadable SRC or an OUT_DIR that cannot be written (read-only, full, not a
directory), 130 when interrupted. Nothing half-written replaces a good store: both files
are written under temporary names (``data.files``) and renamed only after both are complete;
a later build removes the temporaries that a killed one left.
"""

import argparse
import multiprocessing
import os
import shutil
import sys
import uuid
from typing import NamedTuple

from data.decode import DEFAULT_MAX_PIXELS, RESAMPLE, ALPHA_BACKGROUND, BadImage, decode_image
from data.files import remove_stale_temporaries, write_json
from data.pixel_stats import PixelStats, image_sums
from data.progress import Progress
from data.sources import find_sources
from data.store import StoreWriter

REPORT = "build_report.json"


class BuildError(Exception):
    """A problem with SRC or OUT_DIR that stops the build (exit status 2)."""


class NothingUsable(Exception):
    """No training image could be decoded (exit status 1)."""


class BuildSummary(NamedTuple):
    out_dir: str
    layout: str
    num_classes: int
    train_count: int
    val_count: int
    skipped: list          # [(relpath, reason)]
    report_path: str


def build(src, out_dir, *, size=256, workers=None, max_pixels=DEFAULT_MAX_PIXELS,
          jpeg_draft=True, progress=True, stream=None):
    """Build OUT_DIR/train.h5 and OUT_DIR/val.h5 from ``src``; returns a ``BuildSummary``.

    ``workers``: decoding processes (None: one per CPU; 0: decode in this process).
    Raises ``BuildError`` for SRC/OUT_DIR problems, ``NothingUsable`` when no training
    image decodes.
    """
    if size < 1:
        raise ValueError(f"build: size must be >= 1, got {size}")
    stream = stream if stream is not None else sys.stderr
    try:
        sources = find_sources(src)
    except (ValueError, OSError) as e:
        raise BuildError(str(e)) from None
    _check_out_dir(out_dir, len(sources.train) + len(sources.val), size)
    settings = {"resample": RESAMPLE.name, "alpha_background": list(ALPHA_BACKGROUND),
                "jpeg_draft": jpeg_draft, "max_pixels": max_pixels, "layout": sources.layout,
                "crop": "shorter side to size, centre crop", "exif_transpose": True}
    build_id = uuid.uuid4().hex
    skipped = list(sources.skipped)
    common = dict(size=size, class_names=sources.class_names, wnids=sources.wnids,
                  build_id=build_id, settings=settings)
    writers = []
    pool = _start_pool(workers)
    try:
        counts = {}
        for split, files in (("train", sources.train), ("val", sources.val)):
            w = _open_writer(out_dir, split, len(files), common)
            writers.append(w)
            stats = PixelStats(size) if split == "train" else None
            bar = Progress(total=len(files), desc=f"build {split}", unit="img",
                           enabled=progress, stream=stream)
            tasks = [(os.path.join(src, p), size, max_pixels, jpeg_draft) for p, _ in files]
            results = pool.imap(_decode_task, tasks, chunksize=4) if pool \
                else map(_decode_task, tasks)
            for (rel, label), res in zip(files, results):
                if res[0] == "bad":
                    skipped.append((rel, res[1]))
                else:
                    image, rgb_sum, rgb_outer = res[1:]
                    _guarded(w.append, image, label, rel, path=w.tmp)
                    if stats is not None:
                        stats.add_sums(image, rgb_sum, rgb_outer)
                bar.update(1, skipped=len(skipped))
            bar.close()
            counts[split] = w.count
            if split == "train":
                if w.count == 0:
                    _write_report(out_dir, src, sources, {"train": 0, "val": 0}, skipped,
                                  build_id)
                    raise NothingUsable(f"no usable training image under {src!r} "
                                        f"({len(files)} candidate files)")
                _guarded(w.set_stats, *stats.finish(), path=w.tmp)
            _guarded(w.finish, path=w.tmp)
        report_path = _write_report(out_dir, src, sources, counts, skipped, build_id)
        for w in writers:
            w.commit()
    except BaseException:
        for w in writers:
            w.abort()
        if pool:
            pool.terminate()
            pool = None
        raise
    finally:
        if pool:
            pool.close()
            pool.join()
    return BuildSummary(out_dir, sources.layout, len(sources.class_names), counts["train"],
                        counts["val"], skipped, report_path)


def _decode_task(task):
    path, size, max_pixels, jpeg_draft = task
    try:
        image = decode_image(path, size, max_pixels=max_pixels, jpeg_draft=jpeg_draft)
    except BadImage as e:
        return ("bad", str(e))
    except Exception as e:  # noqa: BLE001 - one odd file must never stop a build
        return ("bad", f"unexpected {type(e).__name__}: {e}")
    s, o = image_sums(image)
    return ("ok", image, s, o)


def _start_pool(workers):
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 0:
        raise ValueError(f"build: workers must be >= 0, got {workers}")
    if workers == 0:
        return None
    # spawn: workers start clean (no inherited HDF5 handles or threads) and open files themselves
    return multiprocessing.get_context("spawn").Pool(workers)


def _check_out_dir(out_dir, n_files, size):
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise BuildError(f"OUT_DIR {out_dir!r} exists and is not a directory")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise BuildError(f"cannot create OUT_DIR {out_dir!r}: {e.strerror}") from None
    probe = os.path.join(out_dir, f".write-probe-{os.getpid()}")
    try:
        with open(probe, "wb") as fh:
            fh.write(b"x")
        os.remove(probe)
    except OSError as e:
        raise BuildError(f"OUT_DIR {out_dir!r} is not writable ({e.strerror}); "
                         "is it on a read-only or full disk?") from None
    remove_stale_temporaries(out_dir, names=("train.h5", "val.h5", REPORT))
    need = n_files * size * size * 3
    free = shutil.disk_usage(out_dir).free
    if need > free:
        raise BuildError(f"OUT_DIR {out_dir!r} has {free / 1e9:.2f} GB free but the store "
                         f"needs up to {need / 1e9:.2f} GB ({n_files} images at {size}x{size})")


def _open_writer(out_dir, split, capacity, common):
    try:
        return StoreWriter(out_dir, f"{split}.h5", capacity=capacity, split=split, **common)
    except OSError as e:
        raise BuildError(f"cannot create {split}.h5 in {out_dir!r}: {e}") from None


def _guarded(fn, *args, path):
    try:
        return fn(*args)
    except OSError as e:
        raise BuildError(f"cannot write {path!r}: {e} (is the disk full or read-only?)") \
            from None


def _write_report(out_dir, src, sources, counts, skipped, build_id):
    path = os.path.join(out_dir, REPORT)
    report = {"src": os.path.abspath(src), "layout": sources.layout, "build_id": build_id,
              "num_classes": len(sources.class_names), "train": counts["train"],
              "val": counts["val"],
              "skipped": [{"path": p, "reason": r} for p, r in skipped]}
    try:
        write_json(path, report)
    except OSError as e:
        raise BuildError(f"cannot write {path!r}: {e.strerror} (disk full or read-only?)") \
            from None
    return path


def format_summary(summary, limit=20):
    """A few human-readable lines describing a finished build."""
    lines = [f"built {summary.out_dir}: layout {summary.layout}, {summary.num_classes} "
             f"classes, {summary.train_count} train + {summary.val_count} val images, "
             f"{len(summary.skipped)} files skipped"]
    reasons = {}
    for _, r in summary.skipped:
        key = r.split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    for key, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {n:6d} x {key}")
    for p, r in summary.skipped[:limit]:
        lines.append(f"  skipped {p}: {r}")
    if len(summary.skipped) > limit:
        lines.append(f"  ... {len(summary.skipped) - limit} more in {summary.report_path}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m data.build", description=__doc__.split("\n")[0])
    ap.add_argument("src", help="image tree: SRC/train/<class>/*, SRC/val/<class>/* "
                                "or the official ILSVRC-2012 layout")
    ap.add_argument("out_dir", help="where train.h5, val.h5 and build_report.json go")
    ap.add_argument("--size", type=int, default=256, help="stored side S (default 256)")
    ap.add_argument("--workers", type=int, default=None, help="decoding processes "
                    "(default: one per CPU; 0: in this process)")
    ap.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                    help="skip images with more pixels (decompression-bomb limit)")
    ap.add_argument("--no-jpeg-draft", action="store_true",
                    help="decode JPEGs at full resolution before resizing")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        summary = build(args.src, args.out_dir, size=args.size, workers=args.workers,
                        max_pixels=args.max_pixels, jpeg_draft=not args.no_jpeg_draft,
                        progress=not args.quiet)
    except BuildError as e:
        print(f"data.build: error: {e}", file=sys.stderr)
        return 2
    except NothingUsable as e:
        print(f"data.build: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("data.build: interrupted; no store was written", file=sys.stderr)
        return 130
    print(format_summary(summary), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
