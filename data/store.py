"""The HDF5 store: what ``data.build`` writes and ``data.loader`` and ``refnet`` read.

One file per split, ``OUT_DIR/train.h5`` and ``OUT_DIR/val.h5``:

    images       (N, S, S, 3) uint8   RGB, chunks of one image (random access)
    labels       (N,) int64           index into class_names
    filenames    (N,) utf-8 str       path relative to SRC, e.g. "train/<class>/x.JPEG"
    class_names  (C,) utf-8 str       class order = sorted folder names / WNIDs
    wnids        (C,) utf-8 str       only when the classes are WordNet ids
  train.h5 only (statistics on the 0-255 scale, float64, see data.pixel_stats):
    mean_image   (S, S, 3)            per-pixel mean over the training images
    pca_eigval   (3,)                 RGB covariance eigenvalues, descending
    pca_eigvec   (3, 3)               columns are the matching unit eigenvectors
    pixel_std    (3,)                 per-channel standard deviation

Attributes: ``format_version`` (int), ``size`` (S), ``split`` ("train"/"val"),
``build_id`` (the same string in both files of one build), ``settings`` (JSON text:
resample filter, alpha background, jpeg draft, source layout, ...), ``images_sha256``:
SHA-256 of the image bytes in store order (``images[0]``, ``images[1]``, ... each S*S*3
bytes, C order) followed by the labels as little-endian int64. Opening checks only that
the checksum is there (a store built before checksums existed loads, with one note per
process); ``verify_store`` (``python -m refnet.data.build --verify DIR``) reads every image
and compares. ``file_identity`` (inode, size, modification time) lets a reader notice the
file being replaced or written while it reads (``data.loader``: ``StoreChanged``).

Reading goes through ``StoreReader`` (checked on opening, ``StoreError`` naming the file
otherwise; metadata, labels, images by index). Writing goes through ``StoreWriter``, which
writes ``.<name>.tmp-<pid>`` in OUT_DIR (``data.files``) and only ``os.replace``-s it onto
the final name in ``commit`` after a close and fsync, so a killed build never leaves a
complete-looking ``train.h5``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import h5py
import numpy
from h5py import h5s
from numpy.typing import ArrayLike

from refnet.data import files
from refnet.data.cli import UserError

FORMAT_VERSION = 1
STR = h5py.string_dtype("utf-8")
IN_MEMORY_BYTES = 2 << 30  # StoreReader: stores with fewer image bytes are read once


class StoreMetadata(NamedTuple):
    """Everything in a store except the images and labels."""

    path: str
    count: int  # type: ignore[assignment]  # the images; shadows tuple.count, never called here
    size: int
    split: str
    class_names: list
    wnids: list | None
    mean_image: numpy.ndarray | None  # (S, S, 3) float64, train only
    pca_eigval: numpy.ndarray | None  # (3,)
    pca_eigvec: numpy.ndarray | None  # (3, 3), columns
    pixel_std: numpy.ndarray | None  # (3,)
    build_id: str
    settings: dict
    checksum: str | None = None  # images_sha256; None: a store built before checksums


class StoreError(UserError):
    """A store file that is missing or malformed; the message is one line naming the file."""


class StoreChanged(StoreError):
    """A store file replaced or written to while a run reads it."""


class ChecksumMismatch(StoreError):
    """A store whose images or labels are not those its checksum was computed over."""

    exit_status = 1  # the command's own finding (refnet.data.build --verify)


def file_identity(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """``(inode, size, modification time in ns)`` of ``path``: changes when the file is
    replaced (another build renamed onto it) or written to."""
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


_NOTED: set[str] = set()  # stores without a checksum already noted in this process


def _note_no_checksum(path: str):
    key = os.path.abspath(path)
    if key not in _NOTED:
        _NOTED.add(key)
        print(
            f"note: {path} has no checksum of its images (built by an older refnet); it "
            "loads, but --verify cannot check it: rebuild it to add one",
            file=sys.stderr,
            flush=True,
        )


class ImagesHash:
    """The running ``images_sha256`` (module doc): ``add`` images in store order, then
    ``hexdigest(labels)``."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def add(self, images: ArrayLike) -> None:
        self._sha.update(numpy.ascontiguousarray(images, dtype=numpy.uint8).tobytes())

    def hexdigest(self, labels: ArrayLike) -> str:
        sha = self._sha.copy()
        sha.update(numpy.asarray(labels, dtype="<i8").tobytes())
        return sha.hexdigest()


def verify_store(
    path: str, batch: int = 256, progress: Callable[[int], object] | None = None
) -> tuple[int, str]:
    """Read every image of the store at ``path`` and compare with its ``images_sha256``:
    ``(count, checksum)`` when they agree; ``ChecksumMismatch`` when not, ``StoreError``
    when the store has no checksum or cannot be read. ``progress(n)`` is called after
    each batch of ``n`` images."""
    with StoreReader(path, memory_limit=0) as store:
        stored = store.metadata.checksum
        if stored is None:
            raise StoreError(
                f"store file {path} has no checksum (built by an older refnet): it cannot "
                "be verified; rebuild it to add one"
            )
        sha = ImagesHash()
        for start in range(0, store.count, batch):
            idx = numpy.arange(start, min(start + batch, store.count))
            sha.add(store.take(idx))
            if progress is not None:
                progress(len(idx))
        found = sha.hexdigest(store.labels)
    if found != stored:
        raise ChecksumMismatch(
            f"store file {path} fails its checksum: its images or labels changed since "
            "it was built (damaged on disk?); rebuild it"
        )
    return store.count, found


class StoreReader:
    """One split of the store, opened for reading: the one reader of stores in the project.

    Axis legend: N images, B asked for, S stored side, 3 RGB.

        with StoreReader(path, memory_limit=IN_MEMORY_BYTES) as store:
            store.metadata          # StoreMetadata
            store.count             # N
            store.labels            # (N,) int64
            store.take(indices)     # (B, S, S, 3) uint8: image j is indices[j]

    Opening checks everything a reader relies on (format_version, the datasets and
    attributes, shapes and dtypes, labels in range of class_names) and raises
    ``StoreError`` with a one-line message naming the file. ``take`` reads the asked images
    in increasing file order, one chunk each, directly into their place in the result,
    so the disk sees sorted reads whatever the order asked. When all images take at most
    ``memory_limit`` bytes, the first ``take`` reads them into memory at once (and closes
    the file); later ones index memory. ``memory_limit=0`` always reads from the file
    (the loader's workers, which read each image once per epoch). Not shared between
    threads: ``take`` moves the reader's selection in the file.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, memory_limit: int = IN_MEMORY_BYTES
    ) -> None:
        self.path = os.fspath(path)
        self.memory_limit = memory_limit
        self._file = self._images = None
        if not os.path.isfile(self.path):
            raise StoreError(
                f"store file {self.path} does not exist (build it with "
                "python -m refnet.data.build SRC OUT_DIR)"
            )
        try:
            self._file = h5py.File(self.path, "r", rdcc_nbytes=0)  # each chunk is read once
            self.metadata, self.labels = _read_checked(self._file, self.path)
            self._dataset = self._file["images"]
            self._shape = self._dataset.shape[1:]  # (S, S, 3)
            self._file_space = self._dataset.id.get_space()
            self._mem_space = h5s.create_simple((1,) + self._shape)
        except StoreError:
            self.close()
            raise
        except Exception as e:  # h5py: OSError, KeyError, ... on a damaged file
            self.close()
            raise StoreError(f"store file {self.path} is malformed: {e}") from None

    @property
    def count(self) -> int:
        return self.metadata.count

    def take(self, indices: ArrayLike) -> numpy.ndarray:
        """Images ``indices`` (B,) as (B, S, S, 3) uint8, in the order asked."""
        indices = numpy.asarray(indices)
        if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
            raise ValueError(
                f"StoreReader.take: indices must be 1-D integers, got "
                f"{indices.shape} {indices.dtype}"
            )
        indices = indices.astype(numpy.int64, copy=False)
        if indices.size and (indices.min() < 0 or indices.max() >= self.count):
            raise IndexError(
                f"StoreReader.take: indices {indices.min()}..{indices.max()} "
                f"outside 0..{self.count - 1} of {self.path}"
            )
        try:
            if self._images is None and self._dataset.nbytes <= self.memory_limit:
                self._images = self._dataset[()]  # (N, S, S, 3)
                self.close()
            if self._images is not None:
                return self._images[indices]
            out = numpy.empty((len(indices),) + self._shape, dtype=numpy.uint8)  # (B, S, S, 3)
            for j in numpy.argsort(indices, kind="stable"):  # increasing file order
                self._file_space.select_hyperslab((int(indices[j]), 0, 0, 0), (1,) + self._shape)
                self._dataset.id.read(self._mem_space, self._file_space, out[j : j + 1])
            return out
        except OSError as e:  # h5py: a file truncated or damaged since it was opened
            raise StoreError(
                f"store file {self.path} could not be read (changed, truncated "
                f"or damaged since it was opened?): {e}"
            ) from None

    def close(self) -> None:
        """Close the file (images already read into memory stay readable)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_checked(f: h5py.File, path: str) -> tuple[StoreMetadata, numpy.ndarray]:
    """(StoreMetadata, labels (N,) int64) of the open store ``f``, or ``StoreError``."""

    def malformed(what: str) -> StoreError:
        return StoreError(f"store file {path} is malformed: {what}")

    version = f.attrs.get("format_version")
    if version is None:
        raise malformed("no attribute format_version (not written by data.build?)")
    if version != FORMAT_VERSION:
        raise malformed(f"format_version {version}, expected {FORMAT_VERSION}")
    missing = [name for name in ("images", "labels", "class_names") if name not in f]
    missing += [
        f"attribute {name}"
        for name in ("size", "split", "build_id", "settings")
        if name not in f.attrs
    ]
    if missing:
        raise malformed("no " + ", ".join(missing))
    images, labels, size = f["images"], f["labels"], int(f.attrs["size"])
    n = images.shape[0] if images.ndim else 0
    if images.shape != (n, size, size, 3) or images.dtype != numpy.uint8:
        raise malformed(
            f"images {images.shape} {images.dtype}, expected (N, {size}, {size}, 3) uint8"
        )
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise malformed(f"labels {labels.shape} {labels.dtype} for {n} images")
    class_names = [s.decode() for s in f["class_names"][()]]
    labels = labels[()].astype(numpy.int64, copy=False)
    if n and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise malformed(
            f"labels {labels.min()}..{labels.max()} outside the {len(class_names)} classes"
        )
    stats: dict[str, Any] = {}
    for name, shape in (
        ("mean_image", (size, size, 3)),
        ("pca_eigval", (3,)),
        ("pca_eigvec", (3, 3)),
        ("pixel_std", (3,)),
    ):
        stats[name] = f[name][()] if name in f else None
        if stats[name] is not None and stats[name].shape != shape:
            raise malformed(f"{name} {stats[name].shape}, expected {shape}")
    wnids = [s.decode() for s in f["wnids"][()]] if "wnids" in f else None
    meta = StoreMetadata(
        path=path,
        count=n,
        size=size,
        split=str(f.attrs["split"]),
        class_names=class_names,
        wnids=wnids,
        **stats,
        build_id=str(f.attrs["build_id"]),
        settings=json.loads(f.attrs["settings"]),
        checksum=str(f.attrs["images_sha256"]) if "images_sha256" in f.attrs else None,
    )
    if meta.checksum is None:
        _note_no_checksum(path)
    return meta, labels


class StoreWriter:
    """Writes one split: ``append`` images one by one, then ``commit`` (or ``abort``)."""

    def __init__(
        self,
        out_dir: str,
        name: str,
        *,
        capacity: int,
        size: int,
        split: str,
        class_names: Sequence[str],
        wnids: Sequence[str] | None,
        build_id: str,
        settings: dict[str, Any],
    ) -> None:
        self.final = os.path.join(out_dir, name)
        self.tmp = files.temporary_path(self.final)
        self.count = 0
        self.labels: list[int] = []
        self.filenames: list[str] = []
        self.hash = ImagesHash()
        # no chunk cache: each image (one chunk) goes to the file as it is appended, so a
        # failed write (a full disk) leaves no dirty chunk for HDF5 to fail on, and crash
        # on, when it shuts down
        self.file = h5py.File(self.tmp, "w", rdcc_nbytes=0)
        f = self.file
        cap = max(capacity, 1)
        self.images = f.create_dataset(
            "images",
            shape=(cap, size, size, 3),
            maxshape=(None, size, size, 3),
            dtype=numpy.uint8,
            chunks=(1, size, size, 3),
        )
        f.create_dataset("class_names", data=numpy.array(class_names, dtype=object), dtype=STR)
        if wnids is not None:
            f.create_dataset("wnids", data=numpy.array(wnids, dtype=object), dtype=STR)
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["size"] = size
        f.attrs["split"] = split
        f.attrs["build_id"] = build_id
        f.attrs["settings"] = json.dumps(settings, sort_keys=True)

    def append(self, image: numpy.ndarray, label: int, filename: str) -> None:
        if self.count == self.images.shape[0]:
            self.images.resize(2 * self.count, axis=0)
        self.images[self.count] = image
        self.hash.add(image)
        self.labels.append(label)
        self.filenames.append(filename)
        self.count += 1

    def set_stats(
        self, mean_image: ArrayLike, eigval: ArrayLike, eigvec: ArrayLike, pixel_std: ArrayLike
    ) -> None:
        f = self.file
        f.create_dataset("mean_image", data=numpy.asarray(mean_image, numpy.float64))
        f.create_dataset("pca_eigval", data=numpy.asarray(eigval, numpy.float64))
        f.create_dataset("pca_eigvec", data=numpy.asarray(eigvec, numpy.float64))
        f.create_dataset("pixel_std", data=numpy.asarray(pixel_std, numpy.float64))

    def finish(self) -> None:
        """Trim to the images written, add labels and filenames, flush and close."""
        f = self.file
        self.images.resize(self.count, axis=0)
        f.create_dataset("labels", data=numpy.asarray(self.labels, dtype=numpy.int64))
        f.create_dataset("filenames", data=numpy.array(self.filenames, dtype=object), dtype=STR)
        f.attrs["images_sha256"] = self.hash.hexdigest(self.labels)
        f.close()
        self.file = None
        files.sync_file(self.tmp)  # durable before either split of a build is renamed

    def commit(self) -> None:
        """Replace the final name with the finished temporary file."""
        files.commit(self.tmp, self.final)

    def abort(self) -> None:
        """Close and remove the temporary file (after an error or interrupt); on a full
        disk too, leaving HDF5 nothing open to fail on at exit (``files.abandon_hdf5``)."""
        if self.file is not None:
            files.abandon_hdf5(self.file, self.tmp)
            self.file = None
        files.discard(self.tmp)
