"""data.loader: reproducible order, exact mid-epoch resume, workers, clean shutdown."""

import threading

import numpy
import pytest

from refnet.data.loader import Loader, sequential_batches
from refnet.data.store import StoreReader, StoreWriter

N, S = 23, 4


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store whose image i is filled with the value i (so pixels identify the index)."""
    out = tmp_path_factory.mktemp("store")
    w = StoreWriter(
        str(out),
        "train.h5",
        capacity=4,
        size=S,
        split="train",
        class_names=["a", "b", "c", "d", "e"],
        wnids=None,
        build_id="x",
        settings={},
    )
    for i in range(N):
        w.append(numpy.full((S, S, 3), i, numpy.uint8), (i * 7) % 5, f"train/{i}.png")
    w.set_stats(numpy.zeros((S, S, 3)), numpy.ones(3), numpy.eye(3), numpy.ones(3))
    w.finish()
    w.commit()
    return str(out / "train.h5")


def indices(images):
    return images[:, 0, 0, 0].astype(int).tolist()


def run_epoch(loader):
    got = []
    for images, labels in loader:
        assert images.dtype == numpy.uint8 and images.shape[1:] == (S, S, 3)
        assert labels.dtype == numpy.int64
        idx = indices(images)
        assert labels.tolist() == [(i * 7) % 5 for i in idx]
        assert (images == numpy.asarray(idx, numpy.uint8)[:, None, None, None]).all()
        got.append(idx)
    return got


def test_epoch_order_is_a_seeded_permutation(store):
    a = Loader(store, 5, seed=3, workers=2)
    b = Loader(store, 5, seed=3, workers=0)
    c = Loader(store, 5, seed=4, workers=1)
    ea, eb, ec = run_epoch(a), run_epoch(b), run_epoch(c)
    assert ea == eb and ea != ec
    assert len(ea) == N // 5 == len(a)
    flat = sum(ea, [])
    assert len(set(flat)) == len(flat) == 20
    assert flat == a.epoch_order(0)[:20].tolist()
    assert sorted(a.epoch_order(0).tolist()) == list(range(N))
    assert run_epoch(a) != ea  # the next epoch has its own order
    assert a.position == (2, 0) and b.position == (1, 0)


def consume(loader, count):
    """The first ``count`` batches (as index lists), crossing epochs as a trainer would."""
    seen = []
    while len(seen) < count:
        for images, _ in loader:
            seen.append(indices(images))
            if len(seen) == count:
                break
    return seen


def test_resume_mid_epoch_is_exact(store):
    full = Loader(store, 4, seed=11, workers=2)
    reference = sum([run_epoch(full) for _ in range(3)], [])  # epochs 0, 1, 2
    assert len(reference) == 15
    for count in [1, 3, 5, 6, 9, 10, 14]:
        first = Loader(store, 4, seed=11, workers=2)
        seen = consume(first, count)
        saved = first.position
        assert saved == (count // 5, 4 * (count % 5))
        resumed = Loader(store, 4, seed=11, workers=1, position=saved)
        rest = []
        while resumed.epoch < 3:
            rest += run_epoch(resumed)
        assert seen + rest == reference, (count, saved)


def test_position_after_last_batch_is_next_epoch(store):
    loader = Loader(store, 5, seed=0)
    positions = []
    for _ in loader:
        positions.append(loader.position)
    assert positions == [(0, 5), (0, 10), (0, 15), (1, 0)]
    loader.seek(0, 20)  # no full batch left: that is the next epoch
    assert loader.position == (1, 0)
    with pytest.raises(ValueError, match="position"):
        loader.seek(0, N + 1)


def test_no_shuffle_keep_last_and_sequential(store):
    loader = Loader(store, 5, shuffle=False, drop_last=False, workers=3)
    assert run_epoch(loader) == [list(range(k, min(k + 5, N))) for k in range(0, N, 5)]
    labels = numpy.concatenate([lab for _, lab in sequential_batches(store, 6)])
    assert labels.tolist() == [(i * 7) % 5 for i in range(N)]


def test_breaking_out_stops_the_workers(store):
    before = {t for t in threading.enumerate() if t.name.startswith("loader-")}
    loader = Loader(store, 2, seed=0, workers=3, prefetch=2)
    for k, _ in enumerate(loader):
        if k == 1:
            break
    after = {t for t in threading.enumerate() if t.name.startswith("loader-")}
    assert after == before
    assert loader.position == (0, 4)
    with pytest.raises(KeyboardInterrupt):
        for _ in Loader(store, 2, seed=0, workers=2):
            raise KeyboardInterrupt
    assert {t for t in threading.enumerate() if t.name.startswith("loader-")} == before


def test_a_store_within_memory_limit_is_read_once_and_gives_the_same_batches(store):
    nbytes = N * S * S * 3
    streamed = Loader(store, 4, seed=7, workers=2)
    held = Loader(store, 4, seed=7, workers=2, memory_limit=nbytes)
    assert not streamed.in_memory and held.in_memory
    assert not Loader(store, 4, memory_limit=nbytes - 1).in_memory
    before = set(threading.enumerate())
    for _ in range(2):  # two epochs: the images read once serve both
        assert run_epoch(held) == run_epoch(streamed)
        assert set(threading.enumerate()) == before  # no loader thread
    resumed = Loader(store, 4, seed=7, memory_limit=nbytes, position=(1, 8))
    assert run_epoch(resumed) == run_epoch(Loader(store, 4, seed=7, position=(1, 8)))


def test_metadata_and_bad_arguments(store):
    with StoreReader(store) as reader:
        meta = reader.metadata
    loader = Loader(store, 5)
    assert loader.metadata.class_names == meta.class_names == ["a", "b", "c", "d", "e"]
    assert meta.count == N and meta.size == S and meta.pca_eigvec.shape == (3, 3)
    with pytest.raises(ValueError, match="batch_size"):
        Loader(store, 0)
    with pytest.raises(ValueError, match="does not exist"):
        Loader(store + ".missing", 5)
