"""What the training loop feeds the network: batches from the HDF5 store, as views.

Axis legend: N batch, S stored side, Cr crop side, V views.

``InputPipeline(cfg)`` (a ``refnet.config.TrainConfig``) opens ``cfg.data/train.h5`` and
``val.h5`` with ``data.store.StoreReader`` (which checks the format; its errors become
``DataError``), checks them against the architecture, and provides

    train_batches()             -> the rest of the current epoch: (images (N, S, S, 3) uint8,
                                   labels (N,), store indices (N,)) from ``loader``
                                   (position: ``loader.position``)
    train_views(images, indices, epoch)
                                -> (N, 3, Cr, Cr) on the network's xp: random crops,
                                   flips and PCA lighting (``data.augment``), each image's
                                   drawn from (seed, epoch, its index)
                                   (``refnet.sample_draws``)
    eval_views(images, views)   -> (N, 3, Cr, Cr) ("center") or (10, N, 3, Cr, Cr) ("ten")
    val_batches(batch)          -> iterator over the validation set in file order (read
                                   into memory once when small; evaluation uses it too);
                                   ``StoreChanged`` before a batch when val.h5 is no
                                   longer the file opened (``data.loader.check_unchanged``)

Training batches come from ``data.loader.Loader`` (shuffled, final partial batch
dropped; a training set of at most ``TRAIN_IN_MEMORY_BYTES`` of images read into memory
once, larger ones batch by batch in a thread): the order of epoch e is
``numpy.random.default_rng([seed, e]).permutation`` of the training images, a pure
function of (seed, epoch), so a run resumed at the loader's saved ``position`` (epoch,
image index) reads exactly the batches it would have read.
All views subtract the training set's mean image; with ``input_scale = "pixel_std"``
they are also divided by the per-channel pixel std (unit-variance inputs, the demo), a
channel that varies by less than one grey level left unscaled
(``data.pixel_stats.input_scale``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy
from numpy.typing import ArrayLike

from refnet import sample_draws
from refnet.arch import get_arch
from refnet.data import augment
from refnet.data import views as crops
from refnet.data.cli import UserError
from refnet.data.loader import Loader, check_unchanged
from refnet.data.pixel_stats import flat_notice, input_scale
from refnet.data.store import StoreError, StoreReader, file_identity
from refnet.layers import backend
from refnet.layers.backend import Array

if TYPE_CHECKING:
    from refnet.distributed import Solo

# a ``refnet.config.TrainConfig``, read as Any: it types epochs, patience and stop_patience
# ``int | "auto"`` and data and out ``str | None``, and the training modules use them where
# the run has resolved or set them
Config = Any
TRAIN_IN_MEMORY_BYTES = 1 << 30  # the loader's memory_limit (module doc)
Host = numpy.ndarray  # a batch's arrays as the loader gives them (images, labels, indices)
Batches = Generator[tuple[Host, ...], None, None]  # the loader's batches of an epoch
Say = Callable[[str], object]  # where a message goes (print)


class DataError(UserError):
    """A missing or malformed data set: reported as one line."""


def ensure_data(cfg: Config, quiet: bool = False, say: Say | None = None) -> str:
    """The data directory to use: ``cfg.data`` when it holds train.h5 and val.h5; for
    a folder of images, its store at the arch's stored size, built into the cache once
    (``data.cache.cached_store``; rebuilt when the images or the settings change); with
    no ``--data``, the demo set (built once, cached)."""
    if cfg.data:
        path = Path(cfg.data).resolve()
        if not is_image_tree(path):
            return str(path)  # a store (or none: said when opened)
        return str(Path(images_store(path, cfg, quiet, say)).resolve())
    if cfg.arch != "demo":
        raise DataError(
            f"--arch {cfg.arch} needs --data OUT_DIR (the demo set is only for --arch demo)"
        )
    try:
        from refnet.data.demo import ensure_demo
    except ImportError as e:
        raise DataError(f"the demo data set is not available ({e}); pass --data") from None
    return str(Path(ensure_demo(progress=not quiet)).resolve())


def is_image_tree(path: str | Path) -> bool:
    """True for a folder of image folders (a tree of one's own images), False for a data
    set directory (train.h5, val.h5) or anything else (said when opened)."""
    path = Path(path)
    folders = path.is_dir() and any(
        p.is_dir() and not p.name.startswith(".") for p in path.iterdir()
    )
    return folders and not (path / "train.h5").exists() and not (path / "val.h5").exists()


def images_store(src: Path, cfg: Config, quiet: bool = False, say: Say | None = None) -> str:
    """The cached store of the image tree ``src`` at ``cfg``'s stored size (module doc)."""
    from refnet.data.build import BuildError, NothingUsable
    from refnet.data.cache import cached_store

    size = cfg.store_size
    say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        out = cached_store(
            str(src),
            size,
            val_fraction=cfg.val_fraction,
            progress=not quiet,
            notice=None if quiet else say,
        )
    except (BuildError, NothingUsable) as e:
        raise DataError(f"--data {src}: {e}") from None
    return out


def _open_store(path: Path) -> StoreReader:
    """``data.store.StoreReader(path)``, its errors as ``DataError``."""
    try:
        return StoreReader(path)
    except StoreError as e:
        raise DataError(str(e)) from None


class InputPipeline:
    """``shard=(r, R)``: the training batches are rank r's part of each global batch (a
    data-parallel job, ``refnet.distributed``); the validation set is whole."""

    def __init__(self, cfg: Config, shard: tuple[int, int] = (0, 1)) -> None:
        self.cfg = cfg
        root = Path(cfg.data)
        self.train_path, self.val_path = root / "train.h5", root / "val.h5"
        with _open_store(self.train_path) as train:  # the loader reads the images
            self.meta = train.metadata
        self._val = _open_store(self.val_path)  # in memory once read, when small
        try:
            self.val_identity = file_identity(self.val_path)  # checked before each batch
            self.val_meta = self._val.metadata
            spec = get_arch(cfg.arch)
            self.crop = spec.input_size
            self.size = self.meta.size
            if self.size != cfg.store_size:
                # a crop of another size of image would see a different part of each image
                # than the arch is made for (a 113 crop of a 256 image: a fifth of it);
                # --size asks for another on purpose
                want = cfg.store_size
                raise DataError(
                    f"{self.train_path} stores {self.size}x{self.size} images, but arch "
                    f"{cfg.arch} takes {self.crop}x{self.crop} crops of "
                    f"{want}x{want} images{'' if cfg.size is None else ' (--size)'}; rebuild "
                    f"it with python -m refnet.data.build SRC {root} --size {want}"
                )
            if (
                self.val_meta.size != self.size
                or self.val_meta.class_names != self.meta.class_names
            ):
                raise DataError(
                    f"{self.val_path} does not match {self.train_path} "
                    "(image size or classes differ)"
                )
            if self.val_meta.build_id != self.meta.build_id:
                raise DataError(
                    f"{self.val_path} and {self.train_path} come from different "
                    f"builds ({self.val_meta.build_id} and {self.meta.build_id}); "
                    "rebuild both with python -m refnet.data.build"
                )
            if len(self.meta.class_names) < 2:
                raise DataError(
                    f"{self.train_path} has {len(self.meta.class_names)} class; "
                    "classification needs at least two"
                )
            if self.meta.mean_image is None or self.meta.pixel_std is None:
                raise DataError(f"{self.train_path} lacks mean_image/pixel_std")
            if self.meta.count == 0 or self.val_meta.count == 0:
                raise DataError(
                    f"{root} has an empty split (train {self.meta.count}, "
                    f"val {self.val_meta.count})"
                )
            self.num_classes = len(self.meta.class_names)
            self.class_names = self.meta.class_names
            pixel_std = cfg.input_scale == "pixel_std"
            self.scale = input_scale(self.meta.pixel_std) if pixel_std else None
            # said once at the start of a run: the channels left unscaled, if any
            self.notice = flat_notice(self.meta.pixel_std) if pixel_std else ""
            self.xp = backend.backend_module(cfg.backend or "numpy")
            self.dtype = cfg.dtype
            self.batch = int(cfg.batch)
            if self.batch > self.meta.count:
                raise DataError(
                    f"--batch {self.batch} is larger than the training set "
                    f"({self.meta.count} images)"
                )
            # shuffle order of epoch e: default_rng([seed, e]).permutation(N) (data.loader)
            if self.batch < shard[1]:
                raise DataError(
                    f"--batch {self.batch} is smaller than the number of "
                    f"ranks ({shard[1]}): every rank needs an image of each batch"
                )
            self.loader = Loader(
                str(self.train_path),
                self.batch,
                shuffle=True,
                seed=int(cfg.seed),
                drop_last=True,
                workers=1,
                prefetch=4,
                shard=shard,
                with_indices=True,
                memory_limit=TRAIN_IN_MEMORY_BYTES,
            )
            self.steps_per_epoch = len(self.loader)
            self.train_count = self.steps_per_epoch * self.batch
        except BaseException:
            self._val.close()
            raise
        self.mean = self.xp.asarray(self.meta.mean_image)

    def close(self) -> None:
        """Close the validation file (the loader's readers close with its iteration)."""
        self._val.close()

    def record(self) -> dict[str, Any]:
        """What ``refnet.predict`` needs to preprocess a new image like this data set,
        and the build it came from (a resumed run checks it)."""
        return {
            "store_size": self.size,
            "crop": self.crop,
            "dtype": self.dtype,
            "build_id": self.meta.build_id,
            "mean_image": numpy.asarray(self.meta.mean_image),
            "scale": None if self.scale is None else numpy.asarray(self.scale),
            "class_names": list(self.class_names),
        }

    # -- training ------------------------------------------------------------------
    def train_batches(self) -> Batches:
        """The rest of the loader's current epoch: (images (B, S, S, 3) uint8, labels (B,))."""
        return cast(Batches, iter(self.loader))  # a generator

    def train_views(self, images: Host, indices: Host, epoch: int) -> Array:
        lighting = float(self.cfg.lighting)
        aug = sample_draws.augmentation(
            self.cfg.seed, epoch, indices, self.size, self.crop, lighting_std=lighting
        )
        eig = (self.meta.pca_eigval, self.meta.pca_eigvec) if lighting > 0 else (None, None)
        return augment.train_views(
            self.xp.asarray(images),
            aug,
            self.mean,
            eig[0],
            eig[1],
            self.crop,
            scale=self.scale,
            dtype=self.dtype,
        )

    def labels(self, labels: ArrayLike) -> Host:
        return numpy.asarray(labels, dtype=numpy.int64)

    def whole_batch(self, world: Solo, indices: Host, labels: Host) -> tuple[Host, Host]:
        """(store indices, labels) of the whole global batch, every rank's slice in rank
        order, from this rank's (hybrid parallel: fc6-fc8 see every image)."""
        everyone = world.allgather(
            [numpy.asarray(indices).tolist(), numpy.asarray(labels).tolist()]
        )
        return (
            numpy.array([i for part, _ in everyone for i in part], dtype=numpy.int64),
            self.labels([k for _, part in everyone for k in part]),
        )

    # -- evaluation ------------------------------------------------------------------
    def eval_views(self, images: Host, views: str = "center") -> Array:
        images = self.xp.asarray(images)
        if views == "center":
            return crops.center_view(
                images, self.mean, self.crop, scale=self.scale, dtype=self.dtype
            )
        if views == "ten":
            return crops.ten_views(images, self.mean, self.crop, scale=self.scale, dtype=self.dtype)
        raise ValueError(f"views must be 'center' or 'ten', got {views!r}")

    def val_batches(
        self, batch: int, part: tuple[int, int] = (0, 1), least: int = 1
    ) -> Iterator[tuple[Host, Host]]:
        """The validation set in file order: (images (B, S, S, 3) uint8, labels (B,));
        with ``part=(r, R)`` only the r-th of R contiguous blocks of it (a rank's share
        of the evaluation, ``numpy.array_split``'s blocks). ``least``: a last batch of
        fewer images joins the one before it (a hybrid evaluation gives every rank an
        image of each batch); ``DataError`` when the whole part is smaller."""
        r, ranks = part
        block = numpy.array_split(numpy.arange(self._val.count), ranks)[r]
        if len(block) < least:
            raise DataError(
                f"{self.val_path} has {len(block)} validation images; evaluating on "
                f"{least} ranks needs at least {least}"
            )
        starts = list(range(0, len(block), batch))
        if len(starts) > 1 and len(block) - starts[-1] < least:
            starts.pop()  # the short last batch joins the one before
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else len(block)
            check_unchanged(str(self.val_path), self.val_identity, "evaluate on other data")
            idx = block[start:end]
            yield self._val.take(idx), self._val.labels[idx]
