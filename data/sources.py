"""Which files make up a dataset, and their labels: the source layouts.

    find_sources(src, val_fraction=0.0) -> Sources(layout, class_names, wnids, train, val,
                                                   skipped)
``train`` and ``val`` are lists of (relative path, label), relative to SRC, in sorted path
order; ``skipped`` lists (relative path, reason) for files that cannot get a label.

Class-folder layout (``layout="folders"``)::

    SRC/train/<class>/**/<file>     every non-hidden regular file is a candidate (the
    SRC/val/<class>/**/<file>       decoder decides whether it is an image)

Classes are the sorted folder names of SRC/train; a val folder naming a class not in
train is skipped with a reason. If every class name looks like a WordNet id (n + 8
digits), ``wnids`` = class names.

Without a validation split, with ``val_fraction`` > 0, a share of each class is held
out for validation (``held_out``: chosen by a hash of each file's path, so the split is
deterministic and stable): ``layout="folders-split"`` for SRC/train/<class>/... with no
val images, ``layout="classes-split"`` for a plain tree of class folders SRC/<class>/**.

Official ILSVRC-2012 layout (``layout="ilsvrc2012"``), recognised when SRC holds the
devkit (``**/data/meta.mat`` up to three levels down) and a flat ``SRC/val``::

    SRC/train/<wnid>/*.JPEG
    SRC/val/ILSVRC2012_val_00000001.JPEG ...
    SRC/<devkit>/data/meta.mat
    SRC/<devkit>/data/ILSVRC2012_validation_ground_truth.txt

Classes are the 1000 leaf synsets of meta.mat (``num_children == 0``) ordered by sorted
WNID; ``class_names`` are their ``words``. Line k of the ground-truth file holds the
ILSVRC2012_ID of ``ILSVRC2012_val_<k>.JPEG`` (1-based). Reading meta.mat needs SciPy.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import NamedTuple

WNID = re.compile(r"^n\d{8}$")
VAL_NAME = re.compile(r"ILSVRC2012_val_(\d+)")
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
# the default share of each class held out for validation when SRC has no val split
# (data.build, data.cache, refnet.train)
VAL_FRACTION = 0.1


class Sources(NamedTuple):
    layout: str
    class_names: list
    wnids: list | None
    train: list  # [(relpath, label)]
    val: list  # [(relpath, label)]
    skipped: list  # [(relpath, reason)]


def find_sources(src: str, val_fraction: float = 0.0) -> Sources:
    """Discover the dataset under ``src``; ValueError with a clear message if unusable.

    ``val_fraction`` > 0: when SRC has no validation images (no val/, or SRC/<class>/
    folders with no train/ at all), hold that share of each class out for validation
    (``held_out``)."""
    if not os.path.isdir(src):
        raise ValueError(f"SRC {src!r} is not a readable directory")
    if not os.access(src, os.R_OK | os.X_OK):
        raise ValueError(f"SRC {src!r} is not readable (permission denied)")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    train_dir = os.path.join(src, "train")
    if not os.path.isdir(train_dir):
        if val_fraction > 0 and _subdirs(src):
            return held_out(_classes(src, ""), val_fraction, "classes-split")
        raise ValueError(
            f"SRC {src!r} has no train/ folder (expected SRC/train/<class>/..."
            + (
                ", or SRC/<class>/... with a held-out validation share)"
                if val_fraction > 0
                else ")"
            )
        )
    meta = _find_meta(src)
    val_dir = os.path.join(src, "val")
    flat_val = os.path.isdir(val_dir) and any(
        e.is_file() for e in os.scandir(val_dir) if not e.name.startswith(".")
    )
    if meta is not None and flat_val:
        return _ilsvrc(src, meta)
    sources = _folders(src)
    if not sources.val and val_fraction > 0:
        return held_out(sources, val_fraction, "folders-split")
    return sources


def held_out(sources: Sources, fraction: float, layout: str) -> Sources:
    """``sources`` with about ``fraction`` of each class's training files moved to val.

    A file goes to val when the hash of its relative path, read as a number in [0, 1),
    is below ``fraction``: the choice depends on the file alone, not on the listing, so
    it is the same on every machine and stays put when other files come or go. A class
    of two or more files keeps at least one in each split (the file with the lowest
    hash moves to val when none did; with the highest stays in train when all did)."""
    by_class: dict[int, list[tuple[float, str]]] = {}
    for path, label in sources.train:
        by_class.setdefault(label, []).append((_unit_hash(path), path))
    train, val = [], []
    for label in sorted(by_class):
        files = sorted(by_class[label])  # by hash
        k = sum(1 for u, _ in files if u < fraction)
        if len(files) >= 2:
            k = min(max(k, 1), len(files) - 1)
        val += [(p, label) for _, p in files[:k]]
        train += [(p, label) for _, p in files[k:]]
    return sources._replace(layout=layout, train=sorted(train), val=sorted(val))


def _unit_hash(path: str):
    """A number in [0, 1) from the SHA-256 of ``path`` (with / separators)."""
    digest = hashlib.sha256(path.replace(os.sep, "/").encode()).hexdigest()
    return int(digest[:13], 16) / 16**13


def _classes(src: str, rel: str):
    """Sources with one class per folder of SRC/rel and every file in train."""
    classes = _subdirs(os.path.join(src, rel))
    if not classes:
        raise ValueError(f"SRC {src!r}: {rel or '.'}/ holds no class folders")
    train = [(p, i) for i, c in enumerate(classes) for p in _files(src, os.path.join(rel, c))]
    wnids = list(classes) if all(WNID.match(c) for c in classes) else None
    return Sources("folders", list(classes), wnids, train, [], [])


def _folders(src: str):
    sources = _classes(src, "train")
    classes, train = sources.class_names, sources.train
    index = {c: i for i, c in enumerate(classes)}
    val, skipped = [], []
    if os.path.isdir(os.path.join(src, "val")):
        for c in _subdirs(os.path.join(src, "val")):
            files = _files(src, os.path.join("val", c))
            if c in index:
                val += [(p, index[c]) for p in files]
            else:
                skipped += [(p, f"class folder {c!r} is not in train/") for p in files]
        for e in sorted(os.scandir(os.path.join(src, "val")), key=lambda e: e.name):
            if e.is_file() and not e.name.startswith("."):
                skipped.append((os.path.join("val", e.name), "file outside a class folder"))
    wnids = list(classes) if all(WNID.match(c) for c in classes) else None
    return Sources("folders", list(classes), wnids, train, val, skipped)


def _ilsvrc(src: str, meta: str):
    synsets = read_meta_mat(meta)  # [(ilsvrc_id, wnid, words)] of leaves
    leaves = sorted(synsets, key=lambda s: s[1])
    wnids = [s[1] for s in leaves]
    index = {w: i for i, w in enumerate(wnids)}
    by_id = {s[0]: index[s[1]] for s in leaves}
    train, skipped = [], []
    for c in _subdirs(os.path.join(src, "train")):
        files = _files(src, os.path.join("train", c))
        if c in index:
            train += [(p, index[c]) for p in files]
        else:
            skipped += [(p, f"train folder {c!r} is not a leaf synset of meta.mat") for p in files]
    truth_path = os.path.join(os.path.dirname(meta), GROUND_TRUTH)
    if not os.path.isfile(truth_path):
        raise ValueError(f"ILSVRC-2012 layout: {truth_path} not found next to {meta}")
    with open(truth_path) as fh:
        truth = [int(line) for line in fh if line.strip()]
    val = []
    for p in _files(src, "val"):
        m = VAL_NAME.search(os.path.basename(p))
        if m is None:
            skipped.append((p, "val file name is not ILSVRC2012_val_<number>"))
            continue
        k = int(m.group(1))
        if not 1 <= k <= len(truth):
            skipped.append((p, f"val number {k} beyond the {len(truth)} ground-truth lines"))
        elif truth[k - 1] not in by_id:
            skipped.append((p, f"ground-truth id {truth[k - 1]} is not a leaf synset"))
        else:
            val.append((p, by_id[truth[k - 1]]))
    names = [s[2] for s in leaves]
    return Sources("ilsvrc2012", names, wnids, train, val, skipped)


def read_meta_mat(path: str) -> list[tuple[int, str, str]]:
    """Leaf synsets of a devkit meta.mat as [(ILSVRC2012_ID, WNID, words)] (needs SciPy)."""
    try:
        import scipy.io
    except ImportError:
        raise ValueError(
            f"reading {path} needs SciPy (pip install scipy); it is only "
            "used for the official ILSVRC-2012 layout"
        ) from None
    m = scipy.io.loadmat(path, squeeze_me=True)
    if "synsets" not in m:
        raise ValueError(f"{path}: no 'synsets' variable (not an ILSVRC devkit meta.mat)")
    syn = m["synsets"].ravel()
    out = []
    for rec in syn:
        if int(rec["num_children"]) == 0:
            out.append((int(rec["ILSVRC2012_ID"]), str(rec["WNID"]), str(rec["words"])))
    if not out:
        raise ValueError(f"{path}: no leaf synsets (num_children == 0)")
    return out


def _find_meta(src: str):
    for root, dirs, files in os.walk(src):
        depth = os.path.relpath(root, src).count(os.sep)
        if os.path.relpath(root, src) in ("train", "val"):
            dirs[:] = []
            continue
        if "meta.mat" in files and os.path.basename(root) == "data":
            return os.path.join(root, "meta.mat")
        if depth >= 2:
            dirs[:] = []
    return None


def _subdirs(path: str):
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _files(src: str, rel_dir: str):
    """Non-hidden regular files under SRC/rel_dir, recursively, as sorted relative paths."""
    out = []
    for root, dirs, files in os.walk(os.path.join(src, rel_dir)):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                out.append(os.path.relpath(os.path.join(root, name), src))
    return sorted(out)


SIDE_SAMPLE = 200  # images whose headers ``typical_side`` reads, spread over the set


def typical_side(
    src: str, val_fraction: float = VAL_FRACTION, sample: int = SIDE_SAMPLE
) -> int | None:
    """The median shorter side, in pixels, of up to ``sample`` training images of the
    tree ``src`` (every k-th in sorted order), read from the file headers alone (Pillow
    decodes no pixel for ``Image.open``); None when no file is a readable image. A
    network sized to its images starts from this (``refnet.config.own_data_arch``)."""
    from PIL import Image

    files = [p for p, _ in find_sources(src, val_fraction).train]
    step = max(1, len(files) // sample)
    sides = []
    for rel in files[::step][:sample]:
        try:
            with Image.open(os.path.join(src, rel)) as im:
                sides.append(min(im.size))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    if not sides:
        return None
    return int(sorted(sides)[len(sides) // 2])
