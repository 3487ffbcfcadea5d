"""The failure cases of docs/failures.md: every command answers an unusable input or a
failed write with one line and a documented status, never a traceback or a crash.

Commands run as ``python -m ...`` in subprocesses (with a timeout, so a hang fails the
test); the full-disk cases mount a 2 MiB tmpfs (as root; skipped where mounting is not
permitted).
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy
import pytest

from refnet import checkpoint, run_dir
from refnet.data import files
from refnet.data.cli import exit_status, note_interrupt
from refnet.data.loader import Loader
from refnet.data.store import (
    ChecksumMismatch,
    StoreChanged,
    StoreError,
    StoreReader,
    verify_store,
)
from tests.train_data import trained_tiny_run

pytestmark = pytest.mark.slow

TIMEOUT = 120


def run(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        cwd=cwd,
    )


def one_line(r, status=2):
    """The command ended with ``status`` and one line on stderr, no traceback."""
    assert r.returncode == status, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if not line.startswith("note:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data dir, a good checkpoint) of a one-epoch tiny run."""
    return trained_tiny_run(tmp_path_factory.mktemp("failures"), "--epochs", "1")


def _variant(good, path, change):
    tree = checkpoint.load(good)
    change(tree)
    checkpoint.save(path, tree)
    return path


def _nan(t):
    t["model"]["fc8.weight"][0, 0] = numpy.nan


def _option(t):
    t["network"]["dropout"] = t["config"]["dropout"] = 1.5


def _shape(t):
    t["model"]["fc8.weight"] = t["model"]["fc8.weight"][:, :-1]


def _int8(t):
    t["model"]["fc8.weight"] = t["model"]["fc8.weight"].astype(numpy.int8)


def _image(path):
    from PIL import Image

    Image.fromarray(numpy.full((60, 60, 3), 90, numpy.uint8)).save(path)
    return path


# -- unusable checkpoints, weights and images --------------------------------------------


@pytest.mark.parametrize(
    "change, words",
    [
        (_nan, "non-finite"),
        (_option, "dropout must be in [0, 1), got 1.5"),
        (_shape, "shapes do not match"),
        (_int8, "dtype int8"),
    ],
)
def test_predict_answers_an_unusable_checkpoint_with_one_line(trained, tmp_path, change, words):
    bad = _variant(trained[1], tmp_path / "bad.h5", change)
    r = run(
        "-m", "refnet.predict", "--checkpoint", bad, "--device", "cpu", _image(tmp_path / "a.png")
    )
    line = one_line(r)
    assert str(bad) in line and words in line


@pytest.mark.parametrize(
    "command",
    [
        ["refnet.evaluate"],
        ["refnet.neighbors", "--out", "{tmp}/grid.png"],
        ["refnet.export", "--onnx", "{tmp}/x.onnx"],
        ["refnet.train", "--resume", "--out", "{tmp}/run", "--data", "{data}", "--arch", "tiny"],
    ],
)
def test_every_command_refuses_integer_weights(trained, tmp_path, command):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    bad = _variant(trained[1], run_dir / "ckpt-00000005.h5", _int8)
    name, *rest = (c.format(tmp=tmp_path, data=trained[0]) for c in command)
    where = [] if name == "refnet.train" else ["--checkpoint", bad]
    r = run("-m", name, *where, "--device", "cpu", *rest)
    line = one_line(r)
    assert str(bad) in line and "dtype int8" in line
    assert not (tmp_path / "grid.png").exists() and not (tmp_path / "x.onnx").exists()


def test_weights_files_of_integers_or_complex_numbers_are_refused(tmp_path):
    safetensors = pytest.importorskip("safetensors.numpy")
    from refnet import NetOptions, build_network
    from refnet.weights import WeightsError, load_safetensors

    net = build_network(NetOptions(arch="tiny", num_classes=3)).init(seed=0)
    sd = net.state_dict()
    sd["fc8.weight"] = sd["fc8.weight"].astype(numpy.int8)
    safetensors.save_file(sd, str(tmp_path / "i8.safetensors"))
    with pytest.raises(
        WeightsError, match=r"i8.safetensors: parameter 'fc8.weight' has dtype int8"
    ):
        load_safetensors(tmp_path / "i8.safetensors")
    safetensors.save_file(
        net.state_dict(), str(tmp_path / "m.safetensors"), metadata={"refnet.options": "{oops"}
    )
    with pytest.raises(WeightsError, match=r"m.safetensors: the metadata key 'refnet.options' is"):
        load_safetensors(tmp_path / "m.safetensors")


def test_a_refused_pth_says_what_and_never_suggests_the_unsafe_load(tmp_path):
    torch = pytest.importorskip("torch")
    from refnet.verify.pth import read_pth
    from refnet.weights import WeightsError

    torch.save({"fc8.weight": torch.zeros(2, 2, dtype=torch.complex64)}, tmp_path / "c.pth")
    with pytest.raises(WeightsError, match="dtype complex64"):
        read_pth(tmp_path / "c.pth")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(WeightsError) as caught:
        read_pth(tmp_path / "module.pth")
    message = str(caught.value)
    assert "torch.nn.modules.linear.Linear" in message and "state_dict()" in message
    assert "weights_only" not in message and "\x1b" not in message and "\n" not in message


@pytest.mark.parametrize("content", [b"", b"plain text, not an image\n"])
def test_neighbors_names_the_bad_image(trained, tmp_path, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    r = run(
        "-m", "refnet.neighbors", "--checkpoint", trained[1], "--device", "cpu",
        "--out", tmp_path / "grid.png", "--images", _image(tmp_path / "good.png"), bad,
    )  # fmt: skip
    line = one_line(r)
    assert f"image {bad}:" in line
    assert not (tmp_path / "grid.png").exists()


# -- a full disk ---------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs at ``tmp_path/disk`` (root only; skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk, leave):
    """Fill ``disk`` up to ``leave`` free bytes."""
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as fh:
        fh.write(b"\0" * max(free - leave, 0))


def test_a_full_disk_while_training_is_one_line_and_leaves_the_checkpoint(trained, small_disk):
    data, good = trained
    shutil.copy(good, small_disk / good.name)
    before = (small_disk / good.name).read_bytes()
    fill(small_disk, 60_000)  # less than a checkpoint of the tiny arch (~130 kB)
    r = run(
        "-m", "refnet.train", "--data", data, "--arch", "tiny", "--device", "cpu",
        "--out", small_disk, "--resume", "--epochs", "3", "--quiet",
    )  # fmt: skip
    line = one_line(r)
    assert "the disk is full" in line and str(small_disk) in line and ".tmp-" not in line
    assert (small_disk / good.name).read_bytes() == before
    assert not [p for p in os.listdir(small_disk) if ".tmp-" in p]
    for record in (small_disk / "log.jsonl").read_text().splitlines():
        json.loads(record)  # whole records only


def test_a_full_disk_while_building_is_one_line(trained, small_disk):
    src = Path(trained[0]).parent / "src"
    fill(small_disk, 150_000)
    driver = textwrap.dedent(
        """
        import shutil, sys
        from refnet.data import build
        from refnet.data.cli import run_command
        usage = shutil.disk_usage
        build.shutil.disk_usage = lambda p: usage(p)._replace(free=10**12)  # pass the estimate
        sys.exit(run_command(lambda: build.main(sys.argv[1:]), "refnet.data.build"))
        """
    )
    r = run("-c", driver, src, small_disk / "out", "--size", "64", "--workers", "0", "--quiet")
    line = one_line(r)
    assert "the disk is full" in line and "train.h5" in line and ".tmp-" not in line
    assert os.listdir(small_disk / "out") == []


def test_a_full_disk_while_exporting_is_one_line(trained, small_disk):
    pytest.importorskip("onnx")
    fill(small_disk, 0)
    out = small_disk / "net.onnx"
    r = run("-m", "refnet.export", "--checkpoint", trained[1], "--device", "cpu", "--onnx", out)
    line = one_line(r)
    assert f"the disk is full: no space left on the device to write {out}" in line
    assert sorted(os.listdir(small_disk)) == ["filler"]


def test_append_text_writes_all_or_nothing(tmp_path, monkeypatch):
    path = tmp_path / "log.jsonl"
    files.append_text(path, "one\n")
    real = os.write

    def short_then_full(fd, data):
        if len(data) > 3:
            return real(fd, bytes(data[:3]))  # part of the record, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "write", short_then_full)
    with pytest.raises(files.OutputError, match="the disk is full.*log.jsonl"):
        files.append_text(path, "two two\n")
    assert path.read_text() == "one\n"


def test_committed_files_have_a_new_files_permissions(tmp_path):
    with files.atomic_path(tmp_path / "a") as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    assert (tmp_path / "a").stat().st_mode & 0o777 == files.NEW_FILE_MODE


def test_an_error_names_the_users_path_not_the_temporary(tmp_path):
    with pytest.raises(files.OutputError) as caught:
        with files.atomic_path(tmp_path / "gone" / "x.onnx") as tmp:
            open(tmp, "w").close()
    assert str(tmp_path / "gone" / "x.onnx") in str(caught.value)
    assert ".tmp-" not in str(caught.value)


# -- --out where no folder can be written --------------------------------------------------


def _train(data, out, *extra):
    return [
        "-m", "refnet.train", "--data", data, "--arch", "tiny", "--device", "cpu",
        "--out", out, "--epochs", "1", "--quiet", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_out_where_no_folder_can_be_made_is_a_usage_error(trained, tmp_path, where):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "run" if where == "under-a-file" else Path("/proc/refnet-run")
    line = one_line(run(*_train(trained[0], out)))
    assert line.startswith(f"refnet.train: error: --out {out}")
    assert not out.exists()


def test_out_on_a_read_only_file_system_is_a_usage_error(trained, tmp_path):
    disk = tmp_path / "ro"
    disk.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(disk)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip("cannot mount a file system here")
    try:
        line = one_line(run(*_train(trained[0], disk / "run")))
        assert "Read-only file system" in line
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="needs mpiexec")
def test_under_mpiexec_a_usage_error_is_said_once(trained, tmp_path):
    (tmp_path / "file").write_text("x")
    r = subprocess.run(
        ["mpiexec", "-n", "2", sys.executable, *_train(trained[0], tmp_path / "file" / "run")],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    if "--out" not in r.stderr:
        pytest.skip(f"mpiexec did not run the job here: {r.stderr[-300:]}")
    assert one_line(r).count("--out") == 1
    r = subprocess.run(
        ["mpiexec", "-n", "2", sys.executable, "-m", "refnet.train", "--bogus"],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("--bogus") == 1, r.stderr


# -- the run folder (refnet.run_dir): made, locked, its lock record written -----------------


@pytest.mark.parametrize("unique", [False, True])
def test_no_run_folder_under_a_file(tmp_path, unique):
    (tmp_path / "file").write_text("x")
    where = tmp_path / "file" / "run"
    with pytest.raises(run_dir.RunDirError) as caught:
        run_dir.claim(where, unique=unique)
    assert str(caught.value) == (
        f"no run folder can be made at {where}: {tmp_path / 'file'} is a file, not a folder"
    )
    assert os.listdir(tmp_path) == ["file"]


def test_a_lock_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "run" / ".lock").mkdir(parents=True)
    with pytest.raises(run_dir.RunDirError) as caught:
        run_dir.claim(tmp_path / "run", unique=False)
    assert str(caught.value) == f"cannot lock the run folder {tmp_path / 'run'}: Is a directory"
    assert os.listdir(tmp_path / "run") == [".lock"]


def test_a_run_folder_on_a_read_only_file_system(small_disk):
    (small_disk / "run").mkdir()
    r = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount read-only here: {r.stderr.decode().strip()}")
    with pytest.raises(run_dir.RunDirError) as caught:  # to be made
        run_dir.claim(small_disk / "new", unique=True)
    assert str(caught.value) == (
        f"no run folder can be made at {small_disk / 'new'}: nothing can be created in "
        f"{small_disk} (Read-only file system)"
    )
    with pytest.raises(run_dir.RunDirError) as caught:  # there, to be locked
        run_dir.claim(small_disk / "run", unique=False)
    assert str(caught.value) == (
        f"cannot lock the run folder {small_disk / 'run'}: Read-only file system"
    )
    assert os.listdir(small_disk) == ["run"] and os.listdir(small_disk / "run") == []


def test_a_full_disk_when_a_run_claims_its_folder_is_one_line(trained, small_disk):
    fill(small_disk, 0)
    line = one_line(run(*_train(trained[0], small_disk / "run")))
    assert line == (
        f"refnet.train: error: the disk is full: no space left on the device to write "
        f"{small_disk / 'run' / '.lock'} (free space in {small_disk / 'run'}; the files "
        "already there are intact)"
    )
    assert os.listdir(small_disk) == ["filler"]  # the folder made for the run removed


def test_a_lock_record_is_whole_or_absent_on_a_full_disk(small_disk):
    run = small_disk / "run"
    run_dir.claim(run, unique=False)[1].release()
    (run / ".lock").write_text("")  # a lock file with no record: nothing to overwrite
    fill(small_disk, 0)
    with pytest.raises(run_dir.RunDirError, match="the disk is full"):
        run_dir.claim(run, unique=False)
    assert (run / ".lock").read_text() == ""
    os.remove(small_disk / "filler")
    path, lock, created = run_dir.claim(run, unique=False)  # the folder is usable again
    assert not created and json.loads((run / ".lock").read_text())["pid"] == os.getpid()
    lock.release()


def test_trim_log_on_a_full_disk_leaves_the_log_whole(small_disk):
    run = small_disk / "run"
    run.mkdir()
    log = run / "log.jsonl"
    log.write_text("".join(json.dumps({"step": k}) + "\n" for k in (1, 2, 3)))
    before = log.read_text()
    fill(small_disk, 0)
    with pytest.raises(files.OutputError, match=r"^the disk is full: .* to write .*log.jsonl"):
        run_dir.trim_log(run, 1)
    assert log.read_text() == before and os.listdir(run) == ["log.jsonl"]


# -- ablate passes signals on --------------------------------------------------------------

CHILD = """
import signal, sys, time
def on(signum, frame):
    open(sys.argv[1], "w").write(signal.Signals(signum).name)
    sys.exit(130 if signum == signal.SIGINT else 143)
signal.signal(signal.SIGINT, on)
signal.signal(signal.SIGTERM, on)
print("child ready", flush=True)
while True:
    time.sleep(0.05)
"""

ABLATE = """
import sys
from refnet import ablate
from refnet.data.cli import run_command
ablate.train_command = lambda *a: [sys.executable, "-c", sys.argv[1], sys.argv[2]]
sys.exit(run_command(lambda: ablate.main(["--seeds", "1", "--variants", "no-lrn",
                                           "--out", sys.argv[3]]), "refnet.ablate"))
"""


@pytest.mark.parametrize(
    "signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, -signal.SIGTERM)]
)
def test_ablate_passes_a_signal_to_its_child_and_waits(tmp_path, signum, status):
    got = tmp_path / "child-got"
    proc = subprocess.Popen(
        [sys.executable, "-c", ABLATE, CHILD, str(got), str(tmp_path / "abl")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in proc.stdout:
            if line.startswith("child ready"):
                break
        proc.send_signal(signum)  # to ablate alone, not its child's group
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    assert got.read_text() == signal.Signals(signum).name  # the child had it, and ended
    assert "Traceback" not in err


# -- the store changing under a run; its checksum -------------------------------------------


def test_a_store_replaced_during_iteration_is_noticed(trained, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(trained[0], data)
    loader = Loader(data / "train.h5", 4, workers=0)
    batches = iter(loader)
    next(batches)
    shutil.copy(data / "val.h5", data / ".other")
    os.replace(data / ".other", data / "train.h5")  # another valid store in its place
    with pytest.raises(StoreChanged, match="changed while the run read it"):
        next(batches)


def _run_changing_its_store(data, out, change):
    """A long training run on ``data`` until its first checkpoint, then ``change()``; its
    standard error once it has ended (the process is killed if it has not)."""
    proc = subprocess.Popen(
        [sys.executable, *_train(data, out)[:-3], "--epochs", "200", "--quiet"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT
        while not checkpoint.list_checkpoints(out):  # an evaluation has read val.h5 too
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        change()
        err = proc.communicate(timeout=TIMEOUT)[1]
    finally:
        proc.kill()
    assert proc.returncode == 2, err
    return err


def test_a_run_whose_store_changes_stops_with_its_checkpoint(trained, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(trained[0], data)

    def flip():  # pixel bytes flipped in place (by a writer that ignores the run's read lock)
        with h5py.File(data / "train.h5", "r+", locking=False) as f:
            f["images"][0, 0, 0, 0] ^= 0xFF

    err = _run_changing_its_store(data, tmp_path / "run", flip)
    line = err.strip().splitlines()[-1]
    assert "changed while the run read it" in line and "the last checkpoint" in line
    assert "--resume" in line and "Traceback" not in err


def test_a_run_whose_val_store_is_replaced_stops_with_its_checkpoint(trained, tmp_path):
    """val.h5 (read into memory at the first evaluation) is watched like train.h5: its
    identity is checked before each evaluation batch."""
    data = tmp_path / "data"
    shutil.copytree(trained[0], data)
    out = tmp_path / "run"

    def replace():  # the same build, another file
        shutil.copy(data / "val.h5", data / ".other")
        os.replace(data / ".other", data / "val.h5")

    err = _run_changing_its_store(data, out, replace)
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"refnet.train: error: store file {data / 'val.h5'} changed"), line
    assert "the last checkpoint" in line and "--resume" in line and "Traceback" not in err
    last = checkpoint.list_checkpoints(out)[-1][1]
    assert str(last) in line
    checkpoint.load(last)  # whole


def test_the_store_checksum_finds_flipped_bytes(trained, tmp_path):
    from refnet.data.build import main as build_main

    data = tmp_path / "data"
    shutil.copytree(trained[0], data)
    assert verify_store(data / "train.h5")[0] == 40
    assert build_main(["--verify", str(data), "--quiet"]) == 0
    with h5py.File(data / "train.h5", "r+") as f:
        f["images"][3, 10, 10, 0] ^= 0x01
    with pytest.raises(ChecksumMismatch, match="fails its checksum"):
        verify_store(data / "train.h5")
    assert build_main(["--verify", str(data), "--quiet"]) == 1


def test_an_old_store_without_checksum_loads_with_one_note(trained, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(trained[0], data)
    with h5py.File(data / "train.h5", "r+") as f:
        del f.attrs["images_sha256"]
    for _ in range(2):
        with StoreReader(data / "train.h5") as store:
            assert store.metadata.checksum is None
    assert capsys.readouterr().err.count("has no checksum") == 1
    with pytest.raises(StoreError, match="cannot be verified"):
        verify_store(data / "train.h5")


# -- Ctrl-C at any moment --------------------------------------------------------------------


def test_an_exception_after_a_ctrl_c_is_reported_as_the_interrupt():
    def broken_by_the_interrupt():
        note_interrupt()
        raise ImportError("initialization failed")

    said = []
    status = exit_status(
        "refnet.x", broken_by_the_interrupt, report=lambda e, s, line: said.append(line)
    )
    assert status == 130 and said == ["refnet.x: interrupted"]
    with pytest.raises(KeyboardInterrupt):  # run_command ends it: one line, 130
        exit_status("refnet.x", broken_by_the_interrupt)
    with pytest.raises(ImportError):  # a new command: no interrupt pending
        exit_status("refnet.x", lambda: (_ for _ in ()).throw(ImportError("a bug")))


def test_the_training_loop_reports_an_exception_after_a_ctrl_c_as_the_interrupt(tmp_path):
    from refnet.stopping import Interrupted, train_until_stopped

    class Plotting:
        phase, interrupt = "epoch-end", False

        def train(self):
            note_interrupt()
            raise ImportError("initialization failed")  # matplotlib's, broken by Ctrl-C

        def last_checkpoint(self):
            return tmp_path / "ckpt-00000005.h5"

    with pytest.raises(Interrupted, match="while evaluating or drawing the plots; the last"):
        train_until_stopped(Plotting(), [])


BLOCKING_H5PY = """
import sys
print("loading h5py", flush=True)
with open(sys.argv[-1]) as fifo:  # blocks until a writer comes: a slow library import
    fifo.read()
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("module", [["-m", "refnet.train"], ["-mrefnet.train"]])
def test_ctrl_c_while_a_command_loads_is_one_line_and_130(tmp_path, module):
    """refnet.train imports h5py as it loads; a stand-in h5py blocks on a FIFO, so the
    press lands while the command's modules load, after ``import refnet``."""
    stub = tmp_path / "stub" / "h5py"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(BLOCKING_H5PY)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(stub.parent), os.environ.get("PYTHONPATH", "")]),
    }
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, *module, "--out", out, "--arch", "tiny", fifo],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout.readline() == "loading h5py\n"
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=TIMEOUT)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err == "refnet.train: interrupted while starting; nothing was written\n"
    assert not out.exists()


SIGINT_HANDLER = (
    "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
)


def test_a_program_importing_refnet_keeps_pythons_ctrl_c(tmp_path):
    """Only ``python -m refnet...`` ends at once while starting; a program of the user's
    (a script, ``-c``, ``python -m`` of its own package) keeps KeyboardInterrupt."""
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"import refnet\n{SIGINT_HANDLER}\n")
    (pkg / "cmd.py").write_text("")
    (tmp_path / "script.py").write_text(f"import refnet\n{SIGINT_HANDLER}\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    for args in (
        ["-m", "userpkg.cmd"],
        [tmp_path / "script.py"],
        ["-c", f"import refnet; {SIGINT_HANDLER}"],
    ):
        r = run(*args, env=env)
        assert r.returncode == 0 and r.stdout == "True\n", (args, r.stderr)


def test_plots_load_what_drawing_needs_on_import():
    code = "import sys, refnet.plots; print('matplotlib.backends._backend_agg' in sys.modules)"
    assert run("-c", code).stdout.strip() == "True"
