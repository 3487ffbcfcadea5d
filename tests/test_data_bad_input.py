"""Every kind of bad input is converted or skipped with a reason; a killed build leaves no OUT."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy
import pytest
from PIL import Image

from refnet.data.build import build
from refnet.data.decode import BadImage, decode_image

S = 16


def jpeg_bytes(array, **kw):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def bad_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    d = root / "src" / "train" / "x"
    os.makedirs(d)
    rng = numpy.random.default_rng(0)
    rgb = rng.integers(0, 256, (S, S, 3), dtype=numpy.uint8)
    good = jpeg_bytes(rgb, quality=95)
    (d / "good.jpg").write_bytes(good)
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])  # cut in the header
    big = jpeg_bytes(rng.integers(0, 256, (48, 48, 3), dtype=numpy.uint8), quality=95)
    (d / "truncated_data.jpg").write_bytes(big[: len(big) * 7 // 10])  # cut in the scan
    (d / "zero.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("this is not an image\n")
    Image.fromarray(rgb).save(d / "png_named.jpg", format="PNG")  # wrong extension
    (d / "jpeg_named.png").write_bytes(good)  # wrong extension
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg", quality=95)
    gray16 = (numpy.arange(S * S).reshape(S, S) * 257).astype(numpy.uint16)
    Image.fromarray(gray16).save(d / "gray16.png")  # 16-bit PNG
    pal = Image.new("P", (S, S), 0)
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.paste(1, (0, 0, S // 2, S))  # left half index 1
    pal.save(d / "palette.png", transparency=0)  # right half transparent
    rgba = numpy.dstack([rgb, numpy.full((S, S), 0, numpy.uint8)])
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")  # fully transparent
    Image.fromarray(rgb[:, :, 0]).save(d / "gray.jpg", quality=95)
    Image.fromarray(numpy.array([[[9, 99, 199]]], numpy.uint8)).save(d / "one_pixel.png")
    Image.fromarray(rng.integers(0, 256, (60, 60, 3), dtype=numpy.uint8)).save(d / "huge.png")
    for folder in ("train/y", "val/x"):  # a second class, a validation split
        os.makedirs(root / "src" / folder)
        (root / "src" / folder / "other.jpg").write_bytes(good)
    summary = build(
        str(root / "src"), str(root / "out"), size=S, workers=2, progress=False, max_pixels=50 * 50
    )
    with h5py.File(root / "out" / "train.h5", "r") as f:
        stored = {
            n.decode(): im
            for n, im in zip(f["filenames"][()], f["images"][()], strict=True)
            if n.decode().startswith("train/x/")
        }
    report = json.loads((root / "out" / "build_report.json").read_text())
    return d, rgb, summary, stored, report


def test_bad_files_are_skipped_with_reasons(bad_tree):
    d, rgb, summary, stored, report = bad_tree
    reasons = {os.path.basename(p): r for p, r in summary.skipped}
    assert set(reasons) == {
        "truncated.jpg",
        "truncated_data.jpg",
        "zero.jpg",
        "text.jpg",
        "huge.png",
    }
    assert reasons["zero.jpg"].startswith("empty file")
    assert reasons["text.jpg"].startswith("not an image")
    assert reasons["truncated.jpg"].startswith("cannot open")
    assert reasons["truncated_data.jpg"].startswith("cannot decode")
    assert reasons["huge.png"].startswith("decompression bomb")
    assert {os.path.basename(s["path"]): s["reason"] for s in report["skipped"]} == reasons
    assert len(stored) == 9 and summary.train_count == 9 + 1  # + train/y/other.jpg


def test_odd_files_are_converted(bad_tree):
    d, rgb, _, stored, _ = bad_tree
    get = {os.path.basename(k): v for k, v in stored.items()}
    numpy.testing.assert_array_equal(get["png_named.jpg"], rgb)  # lossless, no resize
    numpy.testing.assert_array_equal(get["jpeg_named.png"], get["good.jpg"])
    assert numpy.abs(get["cmyk.jpg"].astype(int) - rgb).mean() < 8  # CMYK -> RGB
    expected16 = numpy.rint(numpy.arange(S * S).reshape(S, S) * 257 / 257.0)
    for c in range(3):  # scaled, not clipped
        numpy.testing.assert_array_equal(get["gray16.png"][:, :, c], expected16.astype(numpy.uint8))
    pal = get["palette.png"]
    assert (pal[:, : S // 2] == [200, 100, 50]).all()  # opaque index 1
    assert (pal[:, S // 2 :] == 255).all()  # transparent -> white
    assert (get["rgba.png"] == 255).all()
    g = get["gray.jpg"]
    assert (g[:, :, 0] == g[:, :, 1]).all() and (g[:, :, 1] == g[:, :, 2]).all()
    assert (get["one_pixel.png"] == [9, 99, 199]).all()  # 1x1 upscaled flat


def test_exif_orientation_is_applied(tmp_path):
    a = numpy.zeros((S, 2 * S, 3), numpy.uint8)
    a[:, :S] = 255  # left half white, landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.png"
    Image.fromarray(a).save(path, exif=exif)
    out = decode_image(str(path), S)  # displayed: portrait, top half white
    assert out[: S // 2 - 2].min() == 255 and out[S // 2 + 2 :].max() == 0


def test_pillow_bomb_limit_is_a_reason_not_a_crash(tmp_path, monkeypatch):
    path = tmp_path / "b.png"
    Image.fromarray(numpy.zeros((40, 40, 3), numpy.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 > 2 * 100: Pillow refuses
    with pytest.raises(BadImage, match="decompression bomb"):
        decode_image(str(path), S)


def test_killed_build_leaves_no_complete_looking_out(tmp_path):
    """A build blocked on a FIFO (mid-way, temp file open) is SIGKILLed."""
    src = tmp_path / "src" / "train" / "a"
    os.makedirs(src)
    rng = numpy.random.default_rng(1)
    for i in range(3):
        (src / f"{i}.jpg").write_bytes(jpeg_bytes(rng.integers(0, 256, (20, 20, 3), numpy.uint8)))
    os.mkfifo(src / "3_blocks.jpg")  # opening it blocks the decoder forever
    for folder in ("train/b", "val/a"):  # a second class, a validation split
        os.makedirs(tmp_path / "src" / folder)
        (tmp_path / "src" / folder / "0.jpg").write_bytes(
            jpeg_bytes(rng.integers(0, 256, (20, 20, 3), numpy.uint8))
        )
    out = tmp_path / "out"
    os.makedirs(out)
    (out / "val.h5").write_bytes(b"an older val store that must survive")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "refnet.data.build",
            str(tmp_path / "src"),
            str(out),
            "--size",
            str(S),
            "--workers",
            "0",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(n.startswith(".train.h5.tmp") for n in os.listdir(out)):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)
        assert proc.poll() is None  # still blocked mid-build
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    names = os.listdir(out)
    assert "train.h5" not in names and "build_report.json" not in names
    assert (out / "val.h5").read_bytes() == b"an older val store that must survive"
    # the next build clears the dead build's temporary file and succeeds
    os.remove(src / "3_blocks.jpg")
    build(str(tmp_path / "src"), str(out), size=S, workers=0, progress=False)
    assert sorted(os.listdir(out)) == ["build_report.json", "train.h5", "val.h5"]
