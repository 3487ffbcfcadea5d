"""Seeded, resumable, prefetching batches from an HDF5 store (format: ``data.store``).

Axis legend: B batch, S stored side, 3 RGB.

    loader = Loader(path, batch_size, *, shuffle=True, seed=0, drop_last=True,
                    workers=2, prefetch=4, position=(0, 0), shard=(0, 1),
                    with_indices=False, memory_limit=0)
    for images, labels in loader:      # the rest of the current epoch
        ...                            # images (B, S, S, 3) uint8, labels (B,) int64, NumPy
        state = loader.position        # (epoch, index): save it AFTER training on the batch
    loader.seek(epoch, index)          # or Loader(..., position=state): resume exactly
    loader.metadata                    # StoreMetadata: mean_image, pca_eigval, pca_eigvec,
                                       # pixel_std, class_names, wnids, size, count
    sequential_batches(path, batch_size) # the whole store in file order (evaluation)

Order. Epoch ``e`` visits the images in ``epoch_order(e)``: with ``shuffle``
``numpy.random.default_rng([seed, e]).permutation(N)``, else 0..N-1 (no RNG state to
save). Batch k is order[k*B:(k+1)*B]; with ``drop_last`` a final partial batch is skipped.

Position. ``position`` = (epoch, index): the next batch starts at order[index]; after an
epoch's last batch it is (epoch + 1, 0). A checkpoint taken after the step on a batch
resumes with the next batch, bit-exactly.

Shards. ``shard=(r, R)``: rank r of R reads part r of every batch (``numpy.array_split``
into R parts); the position stays the whole job's. ``with_indices=True`` also yields the
store indices of the images.

Workers. ``workers`` threads (0: the calling thread) each open the file and read every
``workers``-th batch; ``prefetch`` batches may wait ready; images are read in increasing
file order. Before each batch is handed out the file is checked to be the one opened
(``data.store.file_identity``): ``StoreChanged`` if it was replaced or written to
(``check_unchanged``; ``refnet.train_inputs`` checks ``val.h5`` the same way).

Memory. With ``memory_limit`` at least the images' bytes (N * S * S * 3), the first
epoch reads them all at once and every batch after is taken from memory in the calling
thread, with no worker: the workers' reads of one image at a time hold Python's lock
(h5py), which slowed what the training thread did meanwhile (the demo's 1,500 images,
29 MB: its crops and draws took 4.8 ms a step beside the reads, 2.8 ms from memory).
The same batches either way.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import numpy

from refnet.data.store import StoreChanged, StoreError, StoreReader, file_identity


class Loader:
    def __init__(
        self,
        path: str,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        workers: int = 2,
        prefetch: int = 4,
        position: Sequence[int] = (0, 0),
        shard: Sequence[int] = (0, 1),
        with_indices: bool = False,
        memory_limit: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"Loader: batch_size must be >= 1, got {batch_size}")
        if workers < 0 or prefetch < 1:
            raise ValueError(
                f"Loader: need workers >= 0 and prefetch >= 1, got {workers}, {prefetch}"
            )
        self.path = path
        with StoreReader(path, memory_limit=0) as store:  # StoreError if not a store
            self.metadata, self.labels = store.metadata, store.labels
            self.identity = file_identity(path)
        self.num_images = self.metadata.count
        self.batch_size = batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.workers, self.prefetch = workers, prefetch
        rank, ranks = (int(v) for v in shard)
        if not 0 <= rank < ranks or ranks > batch_size:
            raise ValueError(
                f"Loader: shard {tuple(shard)} must be (rank, ranks) with "
                f"0 <= rank < ranks <= batch_size ({batch_size})"
            )
        self.shard, self.with_indices = (rank, ranks), with_indices
        size = self.metadata.size
        self.memory_limit = memory_limit
        self.in_memory = self.num_images * size * size * 3 <= memory_limit
        self._memory: StoreReader | None = None  # in_memory: the images, read once
        self.seek(*position)

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.drop_last:
            return self.num_images // self.batch_size
        return -(-self.num_images // self.batch_size)

    @property
    def position(self) -> tuple[int, int]:
        return (self._epoch, self._index)

    @property
    def epoch(self) -> int:
        return self._epoch

    def seek(self, epoch: int, index: int = 0) -> None:
        """Continue from ``position`` (epoch, index), as saved from ``loader.position``."""
        epoch, index = int(epoch), int(index)
        if epoch < 0 or not 0 <= index <= self.num_images:
            raise ValueError(
                f"Loader.seek: position ({epoch}, {index}) outside "
                f"epoch >= 0, 0 <= index <= {self.num_images}"
            )
        self._epoch, self._index = epoch, index
        if not self._batches_left():
            self._epoch, self._index = epoch + 1, 0

    def epoch_order(self, epoch: int) -> numpy.ndarray:
        """The (N,) int64 order in which epoch ``epoch`` visits the images."""
        if not self.shuffle:
            return numpy.arange(self.num_images, dtype=numpy.int64)
        return numpy.random.default_rng([self.seed, epoch]).permutation(self.num_images)

    def _batches_left(self):
        left = self.num_images - self._index
        return left >= self.batch_size or (left > 0 and not self.drop_last)

    def __iter__(self) -> Iterator[tuple[numpy.ndarray, ...]]:
        epoch, start = self._epoch, self._index
        order = self.epoch_order(epoch)
        stops = range(start, self.num_images, self.batch_size)
        batches = [order[i : i + self.batch_size] for i in stops]
        if batches and self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        rank, ranks = self.shard
        if ranks > 1:  # this rank's part of every batch (module doc)
            batches = [numpy.array_split(b, ranks)[rank] for b in batches]
        if self.in_memory:
            if self._memory is None:
                self._memory = StoreReader(self.path, memory_limit=self.memory_limit)
            source = (self._memory.take(b) for b in batches)
        else:
            source = _read_batches(self.path, batches, self.workers, self.prefetch)
        try:
            for k, images in enumerate(source):
                self.check_unchanged()
                self._index = start + (k + 1) * self.batch_size
                if not self._batches_left():
                    self._epoch, self._index = epoch + 1, 0
                if self.with_indices:
                    yield images, self.labels[batches[k]], batches[k]
                else:
                    yield images, self.labels[batches[k]]
        finally:
            source.close()
        self._epoch, self._index = epoch + 1, 0

    def check_unchanged(self) -> None:
        """``StoreChanged`` if the store file is no longer the one opened (another build
        renamed onto it, or bytes written into it: its inode, size or modification time
        differ); one ``os.stat``, done before each batch is handed out."""
        check_unchanged(self.path, self.identity)


def check_unchanged(
    path: str, identity: tuple[int, int, int], instead: str = "train on mixed data"
) -> None:
    """``StoreChanged`` if store file ``path``'s ``file_identity`` is no longer
    ``identity`` (or it is gone); the message ends "stopping rather than INSTEAD"."""
    now: tuple[int, int, int] | str | None
    try:
        now = file_identity(path)
    except OSError as e:
        now = e.strerror
    if now != identity:
        raise StoreChanged(
            f"store file {path} changed while the run read it (replaced by another "
            f"build, or written to); stopping rather than {instead}"
        )


def sequential_batches(
    path: str, batch_size: int, *, workers: int = 2, prefetch: int = 4
) -> Iterator[tuple[numpy.ndarray, ...]]:
    """Every image of a store once, in file order: yields (images, labels) batches."""
    loader = Loader(
        path, batch_size, shuffle=False, drop_last=False, workers=workers, prefetch=prefetch
    )
    yield from loader


def _read_batches(
    path: str, batches: list[numpy.ndarray], workers: int, prefetch: int
) -> Generator[numpy.ndarray, None, None]:
    """Generator of image batches for ``batches`` (lists of indices), in order."""
    if workers == 0 or len(batches) == 0:
        reader = StoreReader(path, memory_limit=0)
        try:
            for b in batches:
                yield reader.take(b)
        finally:
            reader.close()
        return
    workers = min(workers, len(batches))
    stop = threading.Event()
    per_queue = max(1, -(-prefetch // workers))
    queues: list[queue.Queue[tuple[str, Any]]] = [
        queue.Queue(maxsize=per_queue) for _ in range(workers)
    ]
    threads = [
        threading.Thread(
            target=_worker,
            args=(path, batches[w::workers], queues[w], stop),
            name=f"loader-{w}",
            daemon=True,
        )
        for w in range(workers)
    ]
    for t in threads:
        t.start()
    try:
        for k in range(len(batches)):
            kind, value = queues[k % workers].get()
            if kind == "error":
                if isinstance(value, StoreError):
                    raise value  # already names the file and the problem
                raise RuntimeError(f"loader worker failed reading {path}: {value!r}") from value
            yield value
    finally:
        stop.set()
        for q in queues:  # unblock workers waiting on a full queue
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
        for t in threads:
            t.join()


def _worker(
    path: str,
    batches: list[numpy.ndarray],
    out: queue.Queue[tuple[str, Any]],
    stop: threading.Event,
):
    reader = None
    try:
        reader = StoreReader(path, memory_limit=0)
        for b in batches:
            item = ("ok", reader.take(b))
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
    except Exception as e:  # noqa: BLE001 - handed to the consumer, raised there
        while not stop.is_set():
            try:
                out.put(("error", e), timeout=0.05)
                break
            except queue.Full:
                continue
    finally:
        if reader is not None:
            reader.close()
