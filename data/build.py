"""Build the HDF5 store from an image tree: ``python -m refnet.data.build SRC OUT_DIR``.

    python -m refnet.data.build SRC OUT_DIR [--size 256] [--workers N] [--max-pixels P]
                                     [--no-jpeg-draft] [--quiet]
    build(src, out_dir, *, size=256, workers=None, ...) -> BuildSummary

SRC layouts are described in ``data.sources``; each file is decoded by
``data.decode.decode_image`` in worker processes (each opens its own files; results come
back in file order, so a build is deterministic whatever the number of workers); the
format written is described in ``data.store``.

SRC must hold at least two classes and a validation split (SRC/val/<class>/..., or the
official layout's flat val/); otherwise nothing is built. Bad files are never fatal:
every file that cannot be used is listed with its reason in ``OUT_DIR/build_report.json``
and summarised at the end, and so is every class left without an image in a split.
Exit status: 0 when a training set was written (even with skipped files), 1 when no
usable training image was found, 2 for a bad option, an unusable SRC (unreadable, fewer
than two classes, no validation split) or an OUT_DIR that cannot be written (read-only,
full, not a directory), 130 when interrupted (Ctrl-C).

Nothing half-written replaces a good store: both files are written under temporary
names (``data.files``) and renamed, with the report, only after both are complete, with
Ctrl-C held back during the renames; a later build removes the temporaries that a killed
one left. On Ctrl-C the worker processes (which ignore it: the terminal sends it to the
whole process group) are terminated and the temporaries removed within seconds.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Sequence
from multiprocessing.pool import Pool
from typing import IO, Any, NamedTuple

from refnet.data.cli import (
    FAILED,
    Parser,
    UserError,
    exit_status,
    fraction,
    ignore_interrupts,
    interrupts_held,
    nonnegative_int,
    positive_int,
    run_command,
    starting_workers,
)
from refnet.data.decode import (
    ALPHA_BACKGROUND,
    DEFAULT_MAX_PIXELS,
    RESAMPLE,
    BadImage,
    decode_image_sized,
)
from refnet.data.files import (
    OutputError,
    is_disk_full,
    remove_stale_temporaries,
    write_failure,
    write_json,
)
from refnet.data.pixel_stats import PixelStats, flat_channels, flat_notice, image_sums
from refnet.data.progress import Progress
from refnet.data.sources import VAL_FRACTION, Sources, find_sources
from refnet.data.store import StoreWriter, verify_store

REPORT = "build_report.json"


class BuildError(UserError):
    """A problem with SRC or OUT_DIR that stops the build (exit status 2)."""


class NothingUsable(Exception):
    """No training image could be decoded (exit status 1)."""

    exit_status = FAILED


class InterruptedAfterCommit(KeyboardInterrupt):
    """Ctrl-C came while the finished stores were being renamed into place: it took
    effect after the renames, so OUT_DIR holds the complete new build."""


class BuildSummary(NamedTuple):
    out_dir: str
    layout: str
    num_classes: int
    train_count: int
    val_count: int
    skipped: list  # [(relpath, reason)]
    report_path: str
    empty_classes: dict  # {"train": [class], "val": [class]}: classes without an image
    upscaled: int = 0  # images whose shorter side was below size (enlarged)
    size: int = 0
    pixel_std: tuple = ()  # the training set's per-channel std (data.pixel_stats)


def build(
    src: str,
    out_dir: str,
    *,
    size: int = 256,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    jpeg_draft: bool = True,
    progress: bool = True,
    stream: IO[str] | None = None,
    val_fraction: float = VAL_FRACTION,
) -> BuildSummary:
    """Build OUT_DIR/train.h5 and OUT_DIR/val.h5 from ``src``; returns a ``BuildSummary``.

    ``workers``: decoding processes (None: one per CPU; 0: decode in this process).
    ``val_fraction``: the share of each class held out for validation when SRC has no
    validation split (``data.sources``); 0 requires SRC/val/.
    Raises ``BuildError`` for SRC/OUT_DIR problems (fewer than two classes, no validation
    split included), ``NothingUsable`` when no training image decodes,
    ``KeyboardInterrupt`` on Ctrl-C (``InterruptedAfterCommit`` when it came during the
    final renames).
    """
    if size < 1:
        raise ValueError(f"build: size must be >= 1, got {size}")
    if workers is not None and workers < 0:
        raise ValueError(f"build: workers must be >= 0, got {workers}")
    stream = stream if stream is not None else sys.stderr
    try:
        sources = find_sources(src, val_fraction)
    except (ValueError, OSError) as e:
        raise BuildError(str(e)) from None
    _check_sources(src, sources, val_fraction)
    _check_out_dir(out_dir, len(sources.train) + len(sources.val), size)
    settings = {
        "resample": RESAMPLE.name,
        "alpha_background": list(ALPHA_BACKGROUND),
        "jpeg_draft": jpeg_draft,
        "max_pixels": max_pixels,
        "layout": sources.layout,
        "crop": "shorter side to size, centre crop",
        "exif_transpose": True,
        "val_fraction": val_fraction if sources.layout.endswith("-split") else None,
    }
    build_id = uuid.uuid4().hex
    skipped = list(sources.skipped)
    common = dict(
        size=size,
        class_names=sources.class_names,
        wnids=sources.wnids,
        build_id=build_id,
        settings=settings,
    )
    writers, committed = [], False
    pool = _start_pool(workers)
    try:
        counts, empty, small = {}, {}, 0  # small: images upscaled to size
        for split, files in (("train", sources.train), ("val", sources.val)):
            w = _open_writer(out_dir, split, len(files), common)
            writers.append(w)
            stats = PixelStats(size) if split == "train" else None
            bar = Progress(
                total=len(files), desc=f"build {split}", unit="img", enabled=progress, stream=stream
            )
            tasks = [(os.path.join(src, p), size, max_pixels, jpeg_draft) for p, _ in files]
            results = _pool_results(pool, tasks) if pool else map(_decode_task, tasks)
            for (rel, label), res in zip(files, results, strict=True):
                if res[0] == "bad":
                    skipped.append((rel, res[1]))
                else:
                    image, rgb_sum, rgb_outer, upscaled = res[1:]
                    small += upscaled
                    _guarded(w.append, image, label, rel, path=w.tmp)
                    if stats is not None:
                        stats.add_sums(image, rgb_sum, rgb_outer)
                bar.update(1, skipped=len(skipped))
            bar.close()
            counts[split] = w.count
            empty[split] = _empty_classes(sources, w.labels)
            if split == "train":
                if w.count == 0:
                    _write_report(
                        out_dir,
                        src,
                        sources,
                        {"train": 0, "val": 0},
                        skipped,
                        build_id,
                        {"train": empty["train"], "val": []},
                    )
                    raise NothingUsable(
                        f"no usable training image under {src!r} ({len(files)} candidate files)"
                    )
                finished = stats.finish()  # type: ignore[union-attr]  # made for train: (mean_image, eigval, eigvec, pixel_std)
                pixel_std = tuple(float(v) for v in finished[3])
                _guarded(w.set_stats, *finished, path=w.tmp)
            _guarded(w.finish, path=w.tmp)
        with interrupts_held():  # the report and both stores, or none of them
            report_path = _write_report(
                out_dir, src, sources, counts, skipped, build_id, empty, pixel_std
            )
            for w in writers:
                w.commit()
            committed = True
    except KeyboardInterrupt:
        if committed:
            raise InterruptedAfterCommit() from None
        raise
    finally:
        if not committed:
            for w in writers:
                w.abort()
        if pool:
            if committed:
                pool.close()
            else:
                pool.terminate()  # workers may be mid-file: stop them now
            pool.join()
    return BuildSummary(
        out_dir,
        sources.layout,
        len(sources.class_names),
        counts["train"],
        counts["val"],
        skipped,
        report_path,
        empty,
        small,
        size,
        pixel_std,
    )


def _check_sources(src: str, sources: Sources, val_fraction: float):
    """Refuse what no training run can use: fewer than two classes, no validation split."""
    n = len(sources.class_names)
    if n < 2:
        where = "in SRC" if sources.layout == "classes-split" else "in train/"
        raise BuildError(
            f"SRC {src!r} has {n} class folder(s) {where} "
            f"({', '.join(map(repr, sources.class_names))}); a classifier "
            "needs at least 2: one folder of images per class, "
            "SRC/<class>/... or SRC/train/<class>/..."
        )
    if sources.val:
        return
    if val_fraction > 0:
        raise BuildError(
            f"SRC {src!r}: no validation image could be held out (classes of "
            "one image each?); add images, or a SRC/val/<class>/... split"
        )
    val_dir = os.path.join(src, "val")
    if not os.path.isdir(val_dir):
        raise BuildError(
            f"SRC {src!r} has no val/ folder; a validation split is needed: "
            "put some images of each class in SRC/val/<class>/, with the "
            "class folder names of SRC/train/"
        )
    raise BuildError(
        f"SRC {src!r}: val/ holds no image files for the classes of train/; "
        "a validation split is needed: SRC/val/<class>/..., with the class "
        "folder names of SRC/train/"
    )


def _empty_classes(sources: Sources, labels: Sequence[int]):
    """Names of the classes without an image in ``labels`` (WNIDs when known)."""
    names = sources.wnids or sources.class_names
    present = set(labels)
    return [name for k, name in enumerate(names) if k not in present]


def _decode_task(task: tuple[str, int, int, bool]):
    path, size, max_pixels, jpeg_draft = task
    try:
        image, (w, h) = decode_image_sized(path, size, max_pixels=max_pixels, jpeg_draft=jpeg_draft)
    except BadImage as e:
        return ("bad", str(e))
    except Exception as e:  # noqa: BLE001 - one odd file must never stop a build
        return ("bad", f"unexpected {type(e).__name__}: {e}")
    s, o = image_sums(image)
    return ("ok", image, s, o, min(w, h) < size)


def _pool_results(pool: Pool, tasks: list[tuple[str, int, int, bool]], chunk: int = 4):
    """``map(_decode_task, tasks)`` in the pool, in order. Each chunk's result is waited
    for with Ctrl-C held back, so that it takes effect here, between results (within
    0.1 s), never inside the pool's own locking, where it could hang the terminate."""
    chunks = [tasks[i : i + chunk] for i in range(0, len(tasks), chunk)]
    with interrupts_held():
        it = pool.imap(_decode_chunk, chunks)
    for _ in chunks:
        while True:
            with interrupts_held():
                try:
                    results = it.next(timeout=0.1)
                    break
                except multiprocessing.TimeoutError:
                    pass
        yield from results


def _decode_chunk(tasks: list[tuple[str, int, int, bool]]):
    return [_decode_task(t) for t in tasks]


def _start_pool(workers: int | None):
    if workers is None:
        workers = os.cpu_count() or 1
    if workers == 0:
        return None
    # spawn: workers start clean (no inherited HDF5 handles or threads) and open files
    # themselves. They ignore Ctrl-C, so that only this process stops, and terminates
    # them: workers dying of it mid-task leave the pool unable to finish or terminate.
    pool = None
    try:
        with starting_workers():
            pool = multiprocessing.get_context("spawn").Pool(workers, initializer=ignore_interrupts)
    except KeyboardInterrupt:  # held while they started, raised once they had
        if pool is not None:
            pool.terminate()
            pool.join()
        raise
    return pool


def _check_out_dir(out_dir: str, n_files: int, size: int):
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
        raise BuildError(
            f"OUT_DIR {out_dir!r} is not writable ({e.strerror}); "
            "is it on a read-only or full disk?"
        ) from None
    remove_stale_temporaries(out_dir, names=("train.h5", "val.h5", REPORT))
    need = n_files * size * size * 3
    free = shutil.disk_usage(out_dir).free
    if need > free:
        raise BuildError(
            f"OUT_DIR {out_dir!r} has {free / 1e9:.2f} GB free but the store "
            f"needs up to {need / 1e9:.2f} GB ({n_files} images at {size}x{size})"
        )


def _open_writer(out_dir: str, split: str, capacity: int, common: dict[str, Any]):
    try:
        return StoreWriter(out_dir, f"{split}.h5", capacity=capacity, split=split, **common)
    except (OSError, RuntimeError) as e:
        if not isinstance(e, OSError) and not is_disk_full(e):
            raise
        raise BuildError(str(write_failure(os.path.join(out_dir, f"{split}.h5"), e))) from None


def _guarded(fn: Callable[..., Any], *args: Any, path: str):
    """``fn(*args)``, a write to the store ``path``; its failure as ``BuildError`` naming
    the store's final name (a full disk said so)."""
    try:
        return fn(*args)
    except (OSError, RuntimeError) as e:  # h5py: RuntimeError for some failed writes
        if not isinstance(e, OSError) and not is_disk_full(e):
            raise
        raise BuildError(str(write_failure(final_name(path), e))) from None


def final_name(tmp: str) -> str:
    """The final name of the temporary ``<folder>/.<name>.tmp-<pid>``."""
    folder, name = os.path.split(tmp)
    return os.path.join(folder, name[1:].rsplit(".tmp-", 1)[0]) if name.startswith(".") else tmp


def _write_report(
    out_dir: str,
    src: str,
    sources: Sources,
    counts: dict[str, int],
    skipped: list[tuple[str, str]],
    build_id: str,
    empty: dict[str, list[str]],
    pixel_std: Sequence[float] = (),
):
    path = os.path.join(out_dir, REPORT)
    report = {
        "src": os.path.abspath(src),
        "layout": sources.layout,
        "build_id": build_id,
        "num_classes": len(sources.class_names),
        "train": counts["train"],
        "val": counts["val"],
        "empty_classes": empty,
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "pixel_std": list(pixel_std),  # per channel, 0-255 scale (data.pixel_stats)
        "unscaled_channels": flat_channels(pixel_std) if pixel_std else [],
    }
    try:
        write_json(path, report)
    except OutputError as e:
        raise BuildError(str(e)) from None
    return path


def format_summary(summary: BuildSummary, limit: int = 20) -> str:
    """A few human-readable lines describing a finished build."""
    lines = [
        f"built {summary.out_dir}: layout {summary.layout}, {summary.num_classes} "
        f"classes, {summary.train_count} train + {summary.val_count} val images, "
        f"{len(summary.skipped)} files skipped"
    ]
    reasons: dict[str, int] = {}
    for _, r in summary.skipped:
        key = r.split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    for key, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {n:6d} x {key}")
    for p, r in summary.skipped[:limit]:
        lines.append(f"  skipped {p}: {r}")
    if len(summary.skipped) > limit:
        lines.append(f"  ... {len(summary.skipped) - limit} more in {summary.report_path}")
    if summary.upscaled:
        lines.append(
            f"notice: {summary.upscaled} image(s) smaller than {summary.size}x"
            f"{summary.size} were upscaled to it (their detail is what it was)"
        )
    if summary.pixel_std and flat_notice(summary.pixel_std):
        lines.append(f"notice: {flat_notice(summary.pixel_std)}")
    for split, names in summary.empty_classes.items():
        if names:
            shown = ", ".join(map(repr, names[:limit]))
            more = f" and {len(names) - limit} more" if len(names) > limit else ""
            lines.append(
                f"warning: {len(names)} class(es) without a usable {split} image: "
                f"{shown}{more} (listed in {summary.report_path})"
            )
    return "\n".join(lines)


def verify(out_dir: str, progress: bool = True, stream: IO[str] | None = None) -> None:
    """Check both stores of ``out_dir`` against their checksums (``data.store.
    verify_store``): one line per store; ``ChecksumMismatch`` (exit 1) for the first that
    fails, ``StoreError`` (2) for one without a checksum or unreadable."""
    stream = stream if stream is not None else sys.stderr
    if not os.path.isdir(out_dir):
        raise BuildError(f"--verify {out_dir!r} is not a folder")
    for name in ("train.h5", "val.h5"):
        path = os.path.join(out_dir, name)
        bar = Progress(desc=f"verify {name}", unit="img", enabled=progress, stream=stream)
        try:
            count, checksum = verify_store(path, progress=bar.update)
        finally:
            bar.close()
        print(f"{path}: {count} images and their labels match checksum {checksum[:16]}...")


EXIT_CODES = {
    0: "the stores were written (even with skipped files); with --verify: both match "
    "their checksums",
    1: "no usable training image (build_report.json says why); with --verify: a store "
    "fails its checksum",
    2: "a bad option value, an unusable SRC (unreadable, fewer than two classes, "
    "no val/ split) or an OUT_DIR that cannot be written",
    130: "interrupted (Ctrl-C); no half-written store is left",
}


def build_parser() -> Parser:
    ap = Parser(
        prog="python -m refnet.data.build",
        description=__doc__.split("\n")[0],
        exit_codes=EXIT_CODES,
    )
    ap.add_argument(
        "src",
        nargs="?",
        help="image tree: SRC/train/<class>/* and SRC/val/<class>/*, "
        "SRC/<class>/* (validation held out), or the official "
        "ILSVRC-2012 layout",
    )
    ap.add_argument("out_dir", nargs="?", help="where train.h5, val.h5 and build_report.json go")
    ap.add_argument(
        "--verify",
        metavar="DIR",
        help="build nothing: read every image of DIR/train.h5 and DIR/val.h5 and check "
        "them against the checksums stored when they were built (default: build)",
    )
    ap.add_argument(
        "--size", type=positive_int, default=256, help="stored side S in pixels (default 256)"
    )
    ap.add_argument(
        "--workers",
        type=nonnegative_int,
        default=None,
        help="decoding processes; 0 decodes in this process (default: one per CPU)",
    )
    ap.add_argument(
        "--max-pixels",
        type=positive_int,
        default=DEFAULT_MAX_PIXELS,
        help="skip images with more pixels, a decompression-bomb limit "
        f"(default {DEFAULT_MAX_PIXELS})",
    )
    ap.add_argument(
        "--no-jpeg-draft",
        action="store_true",
        help="decode JPEGs at full resolution before resizing (default: "
        "large JPEGs are shrunk while decoding, to no less than 2S)",
    )
    ap.add_argument(
        "--val-fraction",
        dest="val_fraction",
        type=fraction,
        default=VAL_FRACTION,
        help="share of each class held out for validation when SRC has no "
        "val/ split, chosen by a hash of each file's path; 0: require "
        f"SRC/val/ (default {VAL_FRACTION})",
    )
    ap.add_argument(
        "--quiet", action="store_true", help="no progress bar (default: a progress bar on stderr)"
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verify is not None:
        if args.src is not None:
            parser.error("--verify DIR takes no SRC or OUT_DIR")
        return exit_status(
            "refnet.data.build", lambda: verify(args.verify, progress=not args.quiet)
        )
    if args.out_dir is None:
        parser.error("SRC and OUT_DIR are required (or --verify DIR)")

    def body() -> int:
        try:
            summary = build(
                args.src,
                args.out_dir,
                size=args.size,
                workers=args.workers,
                max_pixels=args.max_pixels,
                jpeg_draft=not args.no_jpeg_draft,
                progress=not args.quiet,
                val_fraction=args.val_fraction,
            )
        except InterruptedAfterCommit:
            print(
                f"refnet.data.build: interrupted after the new stores were written; "
                f"{args.out_dir!r} holds the complete build",
                file=sys.stderr,
            )
            return 130
        except KeyboardInterrupt:
            print(
                f"refnet.data.build: interrupted; nothing was written in place of the stores in "
                f"{args.out_dir!r}, and no temporary file is left",
                file=sys.stderr,
            )
            return 130
        print(format_summary(summary), file=sys.stderr)
        return 0

    return exit_status("refnet.data.build", body)


if __name__ == "__main__":
    sys.exit(run_command(main, "refnet.data.build"))
