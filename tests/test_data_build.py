"""data.build end to end: round trip vs Pillow, exact statistics, both layouts, OUT errors."""

import json
import os

import h5py
import numpy
import pytest
from PIL import Image

from refnet.data import build as build_mod
from refnet.data.build import BuildError, NothingUsable, build, main
from refnet.data.store import StoreReader

S = 32


def pillow_reference(path, size, draft=False):
    """Pillow's own pipeline: RGB, shorter side to size (bicubic), centre crop."""
    with Image.open(path) as img:
        if draft:
            img.draft("RGB", (2 * size, 2 * size))
        img = img.convert("RGB")
        w, h = img.size
        nw, nh = (size, round(h * size / w)) if w <= h else (round(w * size / h), size)
        img = img.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        return numpy.asarray(img.crop((left, top, left + size, top + size)))


def smooth_image(rng, w, h):
    """A smooth random RGB image (so JPEG and resampling behave like on photos)."""
    small = rng.integers(0, 256, (4, 4, 3), dtype=numpy.uint8)
    return numpy.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))


def write_tree(root, rng, counts=(("train", 4), ("val", 2)), classes=("cat", "dog", "emu")):
    files = {}
    for split, n in dict(counts).items():
        for c in classes:
            os.makedirs(root / split / c, exist_ok=True)
            for i in range(n):
                w, h = (int(v) for v in rng.integers(S // 2, 3 * S, 2))
                ext = ("jpg", "png")[i % 2]
                p = root / split / c / f"{i}.{ext}"
                Image.fromarray(smooth_image(rng, w, h)).save(p)
                files[f"{split}/{c}/{i}.{ext}"] = p
    return files


def complete_tree(src, cls):
    """Make SRC buildable around class ``cls``: a second class (sorted after it in
    train/) and a validation split, one small image each."""
    image = Image.fromarray(numpy.full((S, S, 3), 128, numpy.uint8))
    for folder in ("train/zz_other", f"val/{cls}"):
        os.makedirs(src / folder)
        image.save(src / folder / "0.png")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    rng = numpy.random.default_rng(0)
    files = write_tree(root / "src", rng)
    big = root / "src" / "train" / "emu" / "big.jpg"  # >= 4S: JPEG draft path
    Image.fromarray(smooth_image(rng, 9 * S, 8 * S)).save(big, quality=95)
    files["train/emu/big.jpg"] = big
    summary = build(str(root / "src"), str(root / "out"), size=S, workers=2, progress=False)
    return root, files, summary


def test_round_trip_equals_pillow_resize_and_crop(built):
    root, files, summary = built
    assert summary.skipped == [] and summary.train_count == 13 and summary.val_count == 6
    for split in ("train", "val"):
        with h5py.File(root / "out" / f"{split}.h5", "r") as f:
            names = [n.decode() for n in f["filenames"][()]]
            assert names == sorted(names) and f["images"].chunks == (1, S, S, 3)
            assert [n.split("/")[1] for n in names] == [
                ["cat", "dog", "emu"][k] for k in f["labels"][()]
            ]
            for name, image in zip(names, f["images"][()], strict=True):
                draft = name.endswith(".jpg")  # draft is a no-op below 4S
                ref = pillow_reference(files[name], S, draft=draft)
                numpy.testing.assert_array_equal(image, ref, err_msg=name)
                if draft:  # the draft decode stays close to the full decode
                    full = pillow_reference(files[name], S).astype(float)
                    assert numpy.abs(image - full).mean() < 1.5


def test_no_draft_option_decodes_at_full_resolution(built, tmp_path):
    root, files, _ = built
    src = tmp_path / "src" / "train" / "x"
    os.makedirs(src)
    os.link(files["train/emu/big.jpg"], src / "big.jpg")
    complete_tree(tmp_path / "src", "x")
    build(
        str(tmp_path / "src"),
        str(tmp_path / "out"),
        size=S,
        workers=0,
        jpeg_draft=False,
        progress=False,
    )
    with h5py.File(tmp_path / "out" / "train.h5", "r") as f:
        numpy.testing.assert_array_equal(f["images"][0], pillow_reference(src / "big.jpg", S))


def test_geometry_shorter_side_then_centre_crop(tmp_path):
    """A wide image whose columns encode their position: the stored crop is the middle."""
    src = tmp_path / "src" / "train" / "a"
    os.makedirs(src)
    wide = numpy.zeros((S, 2 * S, 3), numpy.uint8)
    wide[:, S // 2 : S // 2 + S] = 255  # the centre square is white
    Image.fromarray(wide).save(src / "wide.png")
    tall = numpy.zeros((4 * S, 2 * S, 3), numpy.uint8)  # halved to S x 2S, crop rows S/2..3S/2
    tall[S : 3 * S] = 255
    Image.fromarray(tall).save(src / "tall.png")
    complete_tree(tmp_path / "src", "a")
    build(str(tmp_path / "src"), str(tmp_path / "out"), size=S, workers=0, progress=False)
    with h5py.File(tmp_path / "out" / "train.h5", "r") as f:
        images = f["images"][()]
    # files are stored in sorted path order: tall.png, wide.png
    assert (images[1] == 255).all()  # wide: no resize, exact middle
    assert (images[0][2:-2] == 255).all()  # tall: halved, middle rows 2S..
    assert images[0][0].max() < 255  # ... the crop edge meets the black


def test_mean_and_pca_equal_direct_numpy(built):
    root, _, _ = built
    with StoreReader(root / "out" / "train.h5") as store:
        meta = store.metadata
    with h5py.File(root / "out" / "train.h5", "r") as f:
        images = f["images"][()].astype(numpy.float64)
    numpy.testing.assert_allclose(meta.mean_image, images.mean(axis=0), rtol=1e-13, atol=1e-12)
    pixels = images.reshape(-1, 3)
    cov = numpy.cov(pixels.T, bias=True)
    eigval = numpy.linalg.eigvalsh(cov)[::-1]
    numpy.testing.assert_allclose(meta.pca_eigval, eigval, rtol=1e-10)
    v = meta.pca_eigvec
    numpy.testing.assert_allclose(v.T @ v, numpy.eye(3), atol=1e-12)
    numpy.testing.assert_allclose(
        v @ numpy.diag(meta.pca_eigval) @ v.T, cov, rtol=1e-10, atol=1e-9 * eigval[0]
    )
    numpy.testing.assert_allclose(meta.pixel_std, pixels.std(axis=0), rtol=1e-12)
    assert (numpy.diff(meta.pca_eigval) <= 0).all()
    with StoreReader(root / "out" / "val.h5") as store:
        val = store.metadata
    assert val.mean_image is None and val.build_id == meta.build_id
    assert meta.class_names == ["cat", "dog", "emu"] and meta.wnids is None


def test_ilsvrc2012_layout_with_a_fake_devkit(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    src = tmp_path / "src"
    rng = numpy.random.default_rng(1)
    synsets = [
        (1, "n00000003", "zebra", 0),
        (2, "n00000001", "apple", 0),
        (3, "n00000002", "kiwi", 0),
        (4, "n09999999", "fruit", 2),
    ]
    dt = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    rec = numpy.array(synsets, dtype=dt)
    os.makedirs(src / "ILSVRC2012_devkit_t12" / "data")
    scipy_io.savemat(str(src / "ILSVRC2012_devkit_t12" / "data" / "meta.mat"), {"synsets": rec})
    for wnid in ("n00000001", "n00000002", "n00000003"):
        os.makedirs(src / "train" / wnid)
        Image.fromarray(smooth_image(rng, 40, 30)).save(src / "train" / wnid / f"{wnid}_1.JPEG")
    os.makedirs(src / "val")
    truth = [1, 3, 2, 1]  # ILSVRC2012_IDs of val 1..4
    for k in range(1, 5):
        Image.fromarray(smooth_image(rng, 30, 40)).save(
            src / "val" / f"ILSVRC2012_val_{k:08d}.JPEG"
        )
    Image.fromarray(smooth_image(rng, 30, 40)).save(src / "val" / "ILSVRC2012_val_00000009.JPEG")
    (src / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{t}\n" for t in truth)
    )
    summary = build(str(src), str(tmp_path / "out"), size=S, workers=0, progress=False)
    assert summary.layout == "ilsvrc2012"
    with StoreReader(tmp_path / "out" / "val.h5") as store:
        meta = store.metadata
    assert meta.wnids == ["n00000001", "n00000002", "n00000003"]  # sorted WNIDs
    assert meta.class_names == ["apple", "kiwi", "zebra"]
    with h5py.File(tmp_path / "out" / "val.h5", "r") as f:
        # id 1 = n00000003 -> 2, id 3 = n00000002 -> 1, id 2 = n00000001 -> 0
        assert f["labels"][()].tolist() == [2, 1, 0, 2]
        assert f["filenames"][0].decode() == "val/ILSVRC2012_val_00000001.JPEG"
    with h5py.File(tmp_path / "out" / "train.h5", "r") as f:
        assert f["labels"][()].tolist() == [0, 1, 2]
    assert [p for p, _ in summary.skipped] == ["val/ILSVRC2012_val_00000009.JPEG"]


def test_cli_exit_codes_and_clear_errors(tmp_path, capsys):
    assert main([str(tmp_path / "missing"), str(tmp_path / "out"), "--quiet"]) == 2
    assert "not a readable directory" in capsys.readouterr().err
    src = tmp_path / "src" / "train" / "a"
    os.makedirs(src)
    (src / "junk.jpg").write_bytes(b"not an image at all")
    for folder in ("train/b", "val/a"):
        os.makedirs(tmp_path / "src" / folder)
        (tmp_path / "src" / folder / "junk.jpg").write_bytes(b"not an image either")
    assert main([str(tmp_path / "src"), str(tmp_path / "out"), "--quiet", "--workers", "0"]) == 1
    assert "no usable training image" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out" / "train.h5")
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["skipped"][0]["path"] == "train/a/junk.jpg"
    assert [n for n in os.listdir(tmp_path / "out") if n.startswith(".")] == []
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BuildError, match="not a directory"):
        build(str(tmp_path / "src"), str(tmp_path / "afile"), size=S, workers=0, progress=False)


def test_full_disk_is_reported_and_leaves_nothing(tmp_path, monkeypatch):
    write_tree(tmp_path / "src", numpy.random.default_rng(2), {"train": 2, "val": 1})
    out = tmp_path / "out"

    class Usage:
        free = 1000

    monkeypatch.setattr(build_mod.shutil, "disk_usage", lambda p: Usage)
    with pytest.raises(BuildError, match="GB free"):
        build(str(tmp_path / "src"), str(out), size=S, workers=0, progress=False)
    monkeypatch.undo()

    def no_space(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build_mod.StoreWriter, "append", no_space)
    with pytest.raises(BuildError, match="the disk is full"):
        build(str(tmp_path / "src"), str(out), size=S, workers=0, progress=False)
    assert os.listdir(out) == []


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions"
)
def test_read_only_out_dir_is_a_clear_error(tmp_path):
    write_tree(tmp_path / "src", numpy.random.default_rng(3), {"train": 1, "val": 1})
    out = tmp_path / "out"
    os.makedirs(out)
    os.chmod(out, 0o500)
    try:
        with pytest.raises(BuildError, match="not writable"):
            build(str(tmp_path / "src"), str(out), size=S, workers=0, progress=False)
    finally:
        os.chmod(out, 0o700)


def test_nothing_usable_raises(tmp_path):
    for folder in ("train/a", "train/b", "val/a"):
        os.makedirs(tmp_path / "src" / folder)
    (tmp_path / "src" / "val" / "a" / "0.jpg").write_bytes(b"not an image")
    with pytest.raises(NothingUsable):
        build(str(tmp_path / "src"), str(tmp_path / "out"), size=S, workers=0, progress=False)


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--size", "0", "argument --size: must be >= 1, got '0'"),
        ("--size", "-256", "argument --size: must be >= 1, got '-256'"),
        ("--size", "big", "argument --size: expected an integer, got 'big'"),
        ("--workers", "-1", "argument --workers: must be >= 0, got '-1'"),
        ("--max-pixels", "0", "argument --max-pixels: must be >= 1, got '0'"),
    ],
)
def test_cli_refuses_bad_values_when_parsing(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path), str(tmp_path / "out"), flag, value])
    assert e.value.code == 2
    assert (
        capsys.readouterr().err == f"python -m refnet.data.build: error: {message} (see --help)\n"
    )
    assert list(tmp_path.iterdir()) == []  # refused before any work


def test_fewer_than_two_classes_is_refused(tmp_path, capsys):
    src = tmp_path / "src"
    write_tree(src, numpy.random.default_rng(4), classes=("cat",))
    assert main([str(src), str(tmp_path / "out"), "--quiet", "--workers", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"refnet.data.build: error: SRC {str(src)!r} has 1 class folder(s) in train/ "
        "('cat'); a classifier needs at least 2: one folder of images per "
        "class, SRC/<class>/... or SRC/train/<class>/..."
    ]
    assert not os.path.exists(tmp_path / "out")


def test_without_held_out_share_a_missing_validation_split_is_refused(tmp_path, capsys):
    src = tmp_path / "src"
    write_tree(src, numpy.random.default_rng(5), {"train": 2})
    argv = [str(src), str(tmp_path / "out"), "--quiet", "--workers", "0", "--val-fraction", "0"]
    assert main(argv) == 2
    [err] = capsys.readouterr().err.splitlines()
    assert (
        "no val/ folder; a validation split is needed: put some images of each "
        "class in SRC/val/<class>/"
        in err
        and repr(str(src)) in err
    )
    os.makedirs(src / "val" / "cat")  # a val/ without images
    assert main(argv) == 2
    assert "val/ holds no image files" in capsys.readouterr().err


def split_of(out):
    """{split: sorted file names} of a built store."""
    names = {}
    for split in ("train", "val"):
        with h5py.File(out / f"{split}.h5", "r") as f:
            names[split] = sorted(s.decode() for s in f["filenames"][()])
        StoreReader(out / f"{split}.h5").close()  # a valid store
    return names


@pytest.mark.parametrize("layout, tree", [("folders-split", "train/"), ("classes-split", "")])
def test_a_share_of_each_class_is_held_out_for_validation(tmp_path, layout, tree):
    """SRC/train/<class>/ without val/, or a plain SRC/<class>/ tree: the default
    --val-fraction holds out a deterministic share of each class, every class in both."""
    src = tmp_path / "src"
    files = write_tree(src, numpy.random.default_rng(7), {"train": 12})
    if not tree:  # SRC/<class>/... instead
        for c in ("cat", "dog", "emu"):
            os.rename(src / "train" / c, src / c)
        os.rmdir(src / "train")
    summary = build(
        str(src), str(tmp_path / "a"), size=S, workers=0, progress=False, val_fraction=0.25
    )
    assert summary.layout == layout
    names = split_of(tmp_path / "a")
    assert not set(names["train"]) & set(names["val"])
    assert len(names["train"]) + len(names["val"]) == len(files)
    for c in ("cat", "dog", "emu"):
        assert any(n.startswith(f"{tree}{c}/") for n in names["val"]), (c, names["val"])
    assert 3 <= len(names["val"]) <= 18  # about a quarter of 36
    # the same split again, and a new image moves no other one
    Image.fromarray(numpy.zeros((S, S, 3), numpy.uint8)).save(src / tree / "cat" / "new.png")
    build(str(src), str(tmp_path / "b"), size=S, workers=0, progress=False, val_fraction=0.25)
    again = split_of(tmp_path / "b")
    new = f"{tree}cat/new.png"
    assert [n for n in again["val"] if n != new] == names["val"]
    assert [n for n in again["train"] if n != new] == names["train"]


def test_empty_classes_are_named_in_a_warning_and_the_report(tmp_path, capsys):
    src = tmp_path / "src"
    write_tree(src, numpy.random.default_rng(6), classes=("cat", "dog"))
    os.makedirs(src / "train" / "emu")  # no images at all
    os.makedirs(src / "train" / "fox")
    (src / "train" / "fox" / "0.jpg").write_bytes(b"not an image")  # none usable
    assert main([str(src), str(tmp_path / "out"), "--quiet", "--workers", "0"]) == 0
    err = capsys.readouterr().err.splitlines()
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["empty_classes"] == {"train": ["emu", "fox"], "val": ["emu", "fox"]}
    assert report["num_classes"] == 4
    path = str(tmp_path / "out" / "build_report.json")
    assert (
        f"warning: 2 class(es) without a usable train image: 'emu', 'fox' (listed in {path})" in err
    )
    assert (
        f"warning: 2 class(es) without a usable val image: 'emu', 'fox' (listed in {path})" in err
    )
