"""Seeded, resumable, prefetching batches from an HDF5 store (format: ``data.store``).

Axis legend: B batch, S stored side, 3 RGB.

    loader = Loader(path, batch_size, *, shuffle=True, seed=0, drop_last=True,
                    workers=2, prefetch=4, position=(0, 0), shard=(0, 1),
                    with_indices=False)
    for images, labels in loader:      # the rest of the current epoch
        ...                            # images (B, S, S, 3) uint8, labels (B,) int64, NumPy
        state = loader.position        # (epoch, index): save it AFTER training on the batch
    loader.seek(epoch, index)          # or Loader(..., position=state): resume exactly
    loader.metadata                    # StoreMetadata: mean_image, pca_eigval, pca_eigvec,
                                       # pixel_std, class_names, wnids, size, count
    sequential_batches(path, batch_size) # the whole store in file order (evaluation)

Order. Epoch ``e`` visits the images in ``epoch_order(e)``: with ``shuffle`` the
permutation ``numpy.random.default_rng([seed, e]).permutation(N)``, else 0..N-1. It
depends only on (seed, e), so an epoch can be replayed or resumed without any saved RNG
state. Batch k is order[k*B:(k+1)*B]; with ``drop_last`` a final partial batch is skipped.

Position. ``position`` = (epoch, index): the next batch handed out starts at
order[index]. It advances when a batch is handed out, and becomes (epoch + 1, 0) as soon
as the last batch of an epoch is handed out; so a checkpoint taken after the training
step on a batch resumes with the next batch, bit-exactly, mid-epoch or not. Iterating the
loader yields the remainder of the current epoch; iterate again for the next one.

Shards. With ``shard=(r, R)`` (rank r of a data-parallel job of R ranks,
``refnet.distributed``) every batch is still chosen from the whole epoch's order, and
this loader reads only part r of it: ``numpy.array_split`` of the batch into R parts,
which differ in size by at most one. The position stays the whole job's, so a
checkpoint resumes on any number of ranks. ``with_indices=True`` yields (images,
labels, indices), the store indices of the images (for per-sample random draws).

Workers. ``workers`` threads each open the file themselves after starting (a
``data.store.StoreReader`` that always reads from the file) and read every
``workers``-th batch; ``prefetch`` batches may wait ready. Within a batch, images are
read in increasing file order (one chunk each, directly into their place in the batch),
so the disk sees sorted reads and the batch keeps its shuffled order. h5py
serialises calls into HDF5, so extra threads mostly overlap reading with the consumer's
computation (NumPy and CuPy release the GIL). ``workers=0`` reads in the calling
thread. Threads stop and files close when the iteration ends, when the consumer breaks
out or raises (Ctrl-C included).

Changes. Before each batch is handed out the store file is checked to be the one opened
(``data.store.file_identity``: inode, size, modification time; one ``os.stat``): a store
replaced by another build or written to while the run reads it raises ``StoreChanged``
(``check_unchanged``; ``refnet.train_inputs`` checks ``val.h5`` the same way).
"""

import queue
import threading

import numpy

from refnet.data.store import StoreChanged, StoreError, StoreReader, file_identity


class Loader:
    def __init__(
        self,
        path,
        batch_size,
        *,
        shuffle=True,
        seed=0,
        drop_last=True,
        workers=2,
        prefetch=4,
        position=(0, 0),
        shard=(0, 1),
        with_indices=False,
    ):
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
        self.seek(*position)

    def __len__(self):
        """Batches per epoch."""
        if self.drop_last:
            return self.num_images // self.batch_size
        return -(-self.num_images // self.batch_size)

    @property
    def position(self):
        return (self._epoch, self._index)

    @property
    def epoch(self):
        return self._epoch

    def seek(self, epoch, index=0):
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

    def epoch_order(self, epoch):
        """The (N,) int64 order in which epoch ``epoch`` visits the images."""
        if not self.shuffle:
            return numpy.arange(self.num_images, dtype=numpy.int64)
        return numpy.random.default_rng([self.seed, epoch]).permutation(self.num_images)

    def _batches_left(self):
        left = self.num_images - self._index
        return left >= self.batch_size or (left > 0 and not self.drop_last)

    def __iter__(self):
        epoch, start = self._epoch, self._index
        order = self.epoch_order(epoch)
        stops = range(start, self.num_images, self.batch_size)
        batches = [order[i : i + self.batch_size] for i in stops]
        if batches and self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        rank, ranks = self.shard
        if ranks > 1:  # this rank's part of every batch (module doc)
            batches = [numpy.array_split(b, ranks)[rank] for b in batches]
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

    def check_unchanged(self):
        """``StoreChanged`` if the store file is no longer the one opened (another build
        renamed onto it, or bytes written into it: its inode, size or modification time
        differ); one ``os.stat``, done before each batch is handed out."""
        check_unchanged(self.path, self.identity)


def check_unchanged(path, identity, instead="train on mixed data"):
    """``StoreChanged`` if store file ``path``'s ``file_identity`` is no longer
    ``identity`` (or it is gone); the message ends "stopping rather than INSTEAD"."""
    try:
        now = file_identity(path)
    except OSError as e:
        now = e.strerror
    if now != identity:
        raise StoreChanged(
            f"store file {path} changed while the run read it (replaced by another "
            f"build, or written to); stopping rather than {instead}"
        )


def sequential_batches(path, batch_size, *, workers=2, prefetch=4):
    """Every image of a store once, in file order: yields (images, labels) batches."""
    loader = Loader(
        path, batch_size, shuffle=False, drop_last=False, workers=workers, prefetch=prefetch
    )
    yield from loader


def _read_batches(path, batches, workers, prefetch):
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
    queues = [queue.Queue(maxsize=per_queue) for _ in range(workers)]
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


def _worker(path, batches, out, stop):
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
