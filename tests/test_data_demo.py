"""data.demo: deterministic, shape-defined classes (mean colour near chance), cached build."""

import json
import os

import numpy

from refnet.data import demo
from refnet.data.store import StoreReader


def mean_colours(per_class, seed):
    feats, labels = [], []
    for cls in range(len(demo.CLASSES)):
        for i in range(per_class):
            rng = numpy.random.default_rng([seed, cls, i])
            img = demo.render(cls, rng, 64, 56)
            feats.append(img.reshape(-1, 3).mean(axis=0))
            labels.append(cls)
    return numpy.array(feats), numpy.array(labels)


def linear_accuracy(x_train, y_train, x_test, y_test):
    """Nearest class mean: a linear classifier, argmax_c (mu_c . x - |mu_c|^2 / 2)."""
    classes = numpy.arange(len(demo.CLASSES))
    mu = numpy.stack([x_train[y_train == c].mean(axis=0) for c in classes])  # (C, 3)
    scores = x_test @ mu.T - 0.5 * (mu * mu).sum(axis=1)  # (N, C)
    return (scores.argmax(axis=1) == y_test).mean()


def test_mean_colour_is_near_chance_but_the_probe_can_succeed():
    x_train, y_train = mean_colours(60, seed=0)
    x_test, y_test = mean_colours(30, seed=1)
    chance = 1 / len(demo.CLASSES)
    assert linear_accuracy(x_train, y_train, x_test, y_test) < chance + 0.08
    # positive control: the same probe finds a class signal when the colour carries one
    tint = numpy.random.default_rng(9).normal(0, 60, (len(demo.CLASSES), 3))
    acc = linear_accuracy(x_train + tint[y_train], y_train, x_test + tint[y_test], y_test)
    assert acc > chance + 0.2


def test_render_is_deterministic_and_varied():
    a = demo.render(3, numpy.random.default_rng([0, 1]), 50, 40)
    b = demo.render(3, numpy.random.default_rng([0, 1]), 50, 40)
    c = demo.render(3, numpy.random.default_rng([0, 2]), 50, 40)
    assert a.shape == (40, 50, 3) and a.dtype == numpy.uint8
    numpy.testing.assert_array_equal(a, b)
    assert not numpy.array_equal(a, c)


def test_the_tree_is_the_same_file_for_file_whatever_the_threads(tmp_path):
    trees = {}
    for threads in (1, 2):
        root = tmp_path / f"t{threads}"
        n = demo.write_demo_tree(
            str(root), train_per_class=3, val_per_class=2, seed=5, progress=False, threads=threads
        )
        files = sorted(p for p in root.rglob("*.jpg"))
        assert n == len(files) == 5 * len(demo.CLASSES)
        trees[threads] = {str(p.relative_to(root)): p.read_bytes() for p in files}
    assert trees[1] == trees[2]
    assert len(set(trees[1].values())) == len(trees[1])  # every image its own


def test_ensure_demo_builds_once_and_rebuilds_on_a_new_version(tmp_path, monkeypatch):
    out = demo.ensure_demo(
        str(tmp_path), workers=0, progress=False, train_per_class=3, val_per_class=1
    )
    with (
        StoreReader(os.path.join(out, "train.h5")) as a,
        StoreReader(os.path.join(out, "val.h5")) as b,
    ):
        train, val = a.metadata, b.metadata
    assert train.count == 30 and val.count == 10 and train.size == demo.DEMO_SIZE
    assert train.class_names == sorted(demo.CLASSES) and train.pixel_std.shape == (3,)
    stamp = os.path.join(out, "stamp.json")
    mtime = os.path.getmtime(os.path.join(out, "train.h5"))
    assert (
        demo.ensure_demo(
            str(tmp_path), workers=0, progress=False, train_per_class=3, val_per_class=1
        )
        == out
    )
    assert os.path.getmtime(os.path.join(out, "train.h5")) == mtime
    with open(stamp) as fh:  # a stale stamp (older generator) rebuilds
        old = json.load(fh)
    old["version"] = -1
    with open(stamp, "w") as fh:
        json.dump(old, fh)
    assert (
        demo.ensure_demo(
            str(tmp_path), workers=0, progress=False, train_per_class=3, val_per_class=1
        )
        == out
    )
    with open(stamp) as fh:
        assert json.load(fh)["version"] == demo.DEMO_VERSION
    assert [n for n in os.listdir(tmp_path) if n.startswith(".build-")] == []
    monkeypatch.setenv("REFNET_CACHE", str(tmp_path / "c"))
    assert demo.default_cache_dir() == str(tmp_path / "c" / "demo")


def test_render_covers_the_shape_area():
    """The supersampled cover of a circle and a square of radius r: pi r^2 and (1.7 r)^2
    of the image, to within the edge pixels' rounding; the foreground colour fills them."""
    for cls, area in ((0, numpy.pi), (1, 1.7**2)):
        for i in range(5):
            rng = numpy.random.default_rng([7, cls, i])
            r = numpy.random.default_rng([7, cls, i]).uniform(0.34, 0.40) * 90
            img = demo.render(cls, rng, 90, 90).astype(float)
            centre = numpy.median(img[40:50, 40:50].reshape(-1, 3), axis=0)
            corner = numpy.median(img[:6, :6].reshape(-1, 3), axis=0)
            # the share of each pixel that is foreground, from its distance between colours
            axis = centre - corner
            share = numpy.clip(((img - corner) @ axis) / (axis @ axis), 0, 1)
            assert abs(share.sum() - area * r * r) < 0.04 * area * r * r + 2 * 90, (cls, i)
