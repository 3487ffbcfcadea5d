"""The HDF5 store: what ``data.build`` writes and ``data.loader`` reads.

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
resample filter, alpha background, jpeg draft, source layout, ...).

Writing goes through ``StoreWriter``, which writes ``.<name>.tmp-<pid>`` in OUT_DIR and
only ``os.replace``-s it onto the final name in ``commit`` after a flush and close, so a
killed build never leaves a complete-looking ``train.h5``.
"""

import json
import os
from typing import NamedTuple

import h5py
import numpy

from data import files

FORMAT_VERSION = 1
STR = h5py.string_dtype("utf-8")


class StoreMetadata(NamedTuple):
    """Everything in a store except the images and labels."""
    path: str
    count: int
    size: int
    split: str
    class_names: list
    wnids: list | None
    mean_image: numpy.ndarray | None      # (S, S, 3) float64, train only
    pca_eigval: numpy.ndarray | None      # (3,)
    pca_eigvec: numpy.ndarray | None      # (3, 3), columns
    pixel_std: numpy.ndarray | None       # (3,)
    build_id: str
    settings: dict


def read_metadata(path):
    """The ``StoreMetadata`` of the store at ``path`` (ValueError if it is not one)."""
    if not os.path.isfile(path):
        raise ValueError(f"read_metadata: no such store file {path!r}")
    with h5py.File(path, "r") as f:
        version = f.attrs.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {version!r}, expected {FORMAT_VERSION}")

        def opt(name):
            return f[name][()] if name in f else None
        wnids = [s.decode() for s in f["wnids"][()]] if "wnids" in f else None
        return StoreMetadata(
            path=path, count=int(f["images"].shape[0]), size=int(f.attrs["size"]),
            split=str(f.attrs["split"]),
            class_names=[s.decode() for s in f["class_names"][()]], wnids=wnids,
            mean_image=opt("mean_image"), pca_eigval=opt("pca_eigval"),
            pca_eigvec=opt("pca_eigvec"), pixel_std=opt("pixel_std"),
            build_id=str(f.attrs["build_id"]), settings=json.loads(f.attrs["settings"]))


def read_labels(path):
    """All labels of a store, (N,) int64."""
    with h5py.File(path, "r") as f:
        return f["labels"][()]


class StoreWriter:
    """Writes one split: ``append`` images one by one, then ``commit`` (or ``abort``)."""

    def __init__(self, out_dir, name, *, capacity, size, split, class_names, wnids,
                 build_id, settings):
        self.final = os.path.join(out_dir, name)
        self.tmp = files.temporary_path(self.final)
        self.count = 0
        self.labels, self.filenames = [], []
        self.file = h5py.File(self.tmp, "w")
        f = self.file
        cap = max(capacity, 1)
        self.images = f.create_dataset(
            "images", shape=(cap, size, size, 3), maxshape=(None, size, size, 3),
            dtype=numpy.uint8, chunks=(1, size, size, 3))
        f.create_dataset("class_names", data=numpy.array(class_names, dtype=object), dtype=STR)
        if wnids is not None:
            f.create_dataset("wnids", data=numpy.array(wnids, dtype=object), dtype=STR)
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["size"] = size
        f.attrs["split"] = split
        f.attrs["build_id"] = build_id
        f.attrs["settings"] = json.dumps(settings, sort_keys=True)

    def append(self, image, label, filename):
        if self.count == self.images.shape[0]:
            self.images.resize(2 * self.count, axis=0)
        self.images[self.count] = image
        self.labels.append(label)
        self.filenames.append(filename)
        self.count += 1

    def set_stats(self, mean_image, eigval, eigvec, pixel_std):
        f = self.file
        f.create_dataset("mean_image", data=numpy.asarray(mean_image, numpy.float64))
        f.create_dataset("pca_eigval", data=numpy.asarray(eigval, numpy.float64))
        f.create_dataset("pca_eigvec", data=numpy.asarray(eigvec, numpy.float64))
        f.create_dataset("pixel_std", data=numpy.asarray(pixel_std, numpy.float64))

    def finish(self):
        """Trim to the images written, add labels and filenames, flush and close."""
        f = self.file
        self.images.resize(self.count, axis=0)
        f.create_dataset("labels", data=numpy.asarray(self.labels, dtype=numpy.int64))
        f.create_dataset("filenames", data=numpy.array(self.filenames, dtype=object), dtype=STR)
        f.close()
        self.file = None
        files.sync_file(self.tmp)     # durable before either split of a build is renamed

    def commit(self):
        """Replace the final name with the finished temporary file."""
        files.commit(self.tmp, self.final)

    def abort(self):
        """Close and remove the temporary file (after an error or interrupt)."""
        if self.file is not None:
            try:
                self.file.close()
            except Exception:
                pass
            self.file = None
        files.discard(self.tmp)
