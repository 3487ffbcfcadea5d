"""data.store.StoreReader: images in the order asked, from the file or memory; clear errors."""

import os
import shutil

import h5py
import numpy
import pytest

from refnet.data.store import StoreError, StoreReader, StoreWriter

N, S = 7, 4


def write_store(folder, name="val.h5"):
    """A store whose image i is filled with the value i, label i % 3."""
    w = StoreWriter(
        str(folder),
        name,
        capacity=2,
        size=S,
        split="val",
        class_names=["a", "b", "c"],
        wnids=None,
        build_id="x",
        settings={},
    )
    for i in range(N):
        w.append(numpy.full((S, S, 3), i, numpy.uint8), i % 3, f"val/{i}.png")
    w.finish()
    w.commit()
    return folder / name


@pytest.mark.parametrize("memory_limit", [0, N * S * S * 3])
def test_take_returns_the_images_in_the_order_asked(tmp_path, memory_limit):
    path = write_store(tmp_path)
    with StoreReader(path, memory_limit=memory_limit) as store:
        assert store.count == N and store.metadata.size == S
        assert store.labels.dtype == numpy.int64
        assert store.labels.tolist() == [i % 3 for i in range(N)]
        for indices in ([5, 0, 3], [6, 6, 1, 6], list(range(N))[::-1], []):
            images = store.take(numpy.asarray(indices, numpy.int32))
            assert images.dtype == numpy.uint8 and images.shape == (len(indices), S, S, 3)
            assert (images == numpy.asarray(indices, numpy.uint8)[:, None, None, None]).all()
        with pytest.raises(IndexError, match="outside"):
            store.take([0, N])
        with pytest.raises(IndexError, match="outside"):
            store.take([-1])


def test_small_store_is_read_into_memory_once(tmp_path):
    path = write_store(tmp_path)
    store = StoreReader(path)  # default limit: far above 336 bytes
    first = store.take([2, 1])
    os.remove(path)  # later takes no longer need the file
    assert (store.take([2, 1]) == first).all() and store.take([4])[0, 0, 0, 0] == 4
    store.close()


def test_bad_stores_are_one_line_errors_naming_the_file(tmp_path):
    good = write_store(tmp_path)

    def broken(name, change):
        path = tmp_path / name
        shutil.copy(good, path)
        with h5py.File(path, "r+") as f:
            change(f)
        return path

    def relabel(f):
        f["labels"][0] = 3

    def reshape_images(f):
        del f["images"]
        f["images"] = numpy.zeros((N, S, S + 1, 3), numpy.uint8)

    (tmp_path / "garbage.h5").write_bytes(b"not HDF5 at all")
    cases = [
        (tmp_path / "missing.h5", "does not exist"),
        (tmp_path / "garbage.h5", "malformed"),
        (
            broken("version.h5", lambda f: f.attrs.__setitem__("format_version", 2)),
            "format_version 2",
        ),
        (
            broken("noversion.h5", lambda f: f.attrs.__delitem__("format_version")),
            "no attribute format_version",
        ),
        (broken("nolabels.h5", lambda f: f.__delitem__("labels")), "no labels"),
        (broken("images.h5", reshape_images), "images"),
        (broken("range.h5", relabel), "outside the 3 classes"),
    ]
    for path, words in cases:
        with pytest.raises(StoreError, match=words) as info:
            StoreReader(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message, message
