"""Stores built once and kept in a cache: the demo set, and a user's own image folders.

    out_dir = cached_store(src, size=128, val_fraction=VAL_FRACTION)  # an image tree -> a store
    out_dir = cached(folder, stamp, make)                      # the mechanism under both

The cache is ``$REFNET_CACHE`` or ``~/.cache/refnet``. A cached store is a folder holding
``train.h5``, ``val.h5`` and ``stamp.json``; it is used when its stamp equals the one
asked for, and rebuilt otherwise. A build runs in a temporary folder beside it and is
renamed into place only when complete, so a killed build never leaves a half-written
store under the cached name (the next run starts over; ``cached`` removes the temporary
folders of builds whose process is gone).

For an image folder the stamp holds the stored size, the build settings and a
fingerprint of the tree: a hash of every file's relative path, size and modification
time. Adding, removing, replacing or touching an image rebuilds the store; the folder
name also carries the source folder's name and the size, for a person looking at it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from refnet.data.files import process_running, write_json
from refnet.data.sources import VAL_FRACTION

STAMP = "stamp.json"
_WORK = re.compile(r"\.build-(\d+)-.*")


def cache_root() -> str:
    """``$REFNET_CACHE``, or ``~/.cache/refnet``."""
    return os.environ.get("REFNET_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "refnet"
    )


def is_complete(folder: str, stamp: dict[str, Any]) -> bool:
    """True when ``folder`` holds a store whose stamp equals ``stamp``."""
    try:
        with open(os.path.join(folder, STAMP)) as fh:
            found = json.load(fh)
    except (OSError, ValueError):
        return False
    return found == stamp and all(
        os.path.isfile(os.path.join(folder, f)) for f in ("train.h5", "val.h5")
    )


def cached(final: str, stamp: dict[str, Any], make: Callable[[str], object]) -> str:
    """``final`` once it holds a complete store stamped ``stamp``: made by ``make(out)``
    (which writes train.h5 and val.h5 into the new folder ``out``) when it does not."""
    if is_complete(final, stamp):
        return final
    root = os.path.dirname(os.path.abspath(final))
    os.makedirs(root, exist_ok=True)
    _remove_dead_builds(root)
    work = tempfile.mkdtemp(prefix=f".build-{os.getpid()}-", dir=root)
    try:
        out = os.path.join(work, "out")
        make(out)
        write_json(os.path.join(out, STAMP), stamp)
        if os.path.exists(final):  # stale or of other settings
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(out, final)
        except OSError:
            if not is_complete(final, stamp):  # another process won the race: fine
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _remove_dead_builds(root: str):
    for entry in os.listdir(root):
        m = _WORK.fullmatch(entry)
        if m and not process_running(int(m.group(1))):
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


def fingerprint(src: str) -> str:
    """A hash of the tree under ``src``: every regular file's relative path, size and
    modification time (hidden files and folders ignored), in sorted order."""
    h = hashlib.sha256()
    for folder, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            rel = os.path.relpath(path, src)
            h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cached_store(
    src: str,
    size: int,
    *,
    val_fraction: float = VAL_FRACTION,
    workers: int | None = None,
    progress: bool = True,
    notice: Callable[[str], object] | None = None,
) -> str:
    """The store of the image tree ``src`` at ``size``, built into the cache once.

    ``val_fraction``: the share of each class held out for validation when ``src`` has no
    val/ split (``data.sources``). ``notice(text)``: told when a build starts and how it
    went (skipped files, upscaled images). ``data.build``'s errors pass through."""
    from refnet.data.build import build, format_summary

    src = os.path.abspath(src)
    stamp = {
        "source": src,
        "fingerprint": fingerprint(src),
        "size": int(size),
        "val_fraction": float(val_fraction),
    }
    key = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(src) or "data")
    final = os.path.join(cache_root(), "stores", f"{name}-{size}-{key}")

    def make(out: str) -> None:
        if notice:
            notice(
                f"building the store of {src} at {size}x{size} into {final} (once; "
                "rebuilt when the images change)"
            )
        summary = build(
            src, out, size=size, workers=workers, progress=progress, val_fraction=val_fraction
        )
        if notice:
            notice(format_summary(summary).replace(out, final))

    return cached(final, stamp, make)
