"""Ctrl-C ends every command within seconds: exit 130, one line, no traceback, nothing
half-written. (refnet.evaluate and refnet.predict: in their own test files, which train
the checkpoint they need.)

Each command is interrupted while it is provably mid-work: a FIFO among the images
blocks the decoder, or the command has printed its first progress line.
"""

import os
import signal

import numpy
import pytest
from PIL import Image

from tests.interrupts import Command, ends_cleanly, without_cupy

S = 16


def image_tree(src, blocking=None):
    """Two classes (8 + 1 train images, 1 val each); ``blocking``: the relative path of a
    FIFO added to train/a, sorted after the images, whose opening blocks until a writer
    comes: a decoder stuck mid-build."""
    rng = numpy.random.default_rng(0)
    for split, counts in (("train", {"a": 8, "b": 1}), ("val", {"a": 1, "b": 1})):
        for cls, n in counts.items():
            os.makedirs(src / split / cls)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=numpy.uint8)).save(
                    src / split / cls / f"{i}.jpg"
                )
    if blocking:
        os.mkfifo(src / blocking)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("workers, presses", [(0, 1), (2, 1), (2, 2)])
def test_data_build_ctrl_c_stops_workers_and_leaves_the_old_stores(tmp_path, workers, presses):
    """One Ctrl-C, or a double tap (whose second press waits for the quick clean-up)."""
    image_tree(tmp_path / "src", blocking="train/a/9_blocks.jpg")
    out = tmp_path / "out"
    os.makedirs(out)
    (out / "val.h5").write_bytes(b"an older store that must survive")
    cmd = Command(
        ["-m", "refnet.data.build", tmp_path / "src", out, "--size", S, "--workers", workers]
    )
    cmd.wait_for(lambda line: line.startswith("build train"))  # the first images are in
    cmd.wait_until(lambda: any(".train.h5.tmp-" in n for n in os.listdir(out)))
    _, err = ends_cleanly(cmd, "refnet.data.build", presses=presses)
    assert [line for line in err if not line.startswith("build ")] == [
        f"refnet.data.build: interrupted; nothing was written in place of the stores in "
        f"{str(out)!r}, and no temporary file is left"
    ]
    assert sorted(os.listdir(out)) == ["val.h5"]  # no temporary left
    assert (out / "val.h5").read_bytes() == b"an older store that must survive"


def test_bench_data_ctrl_c_removes_its_folder_and_writes_no_json(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    cmd = Command(
        ["-m", "refnet.bench.data", "--images", 40, "--json", tmp_path / "r.json"], env=env
    )
    cmd.wait_for(lambda line: line.startswith("bench: writing JPEGs"))
    ends_cleanly(cmd, "refnet.bench.data")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signals")
@pytest.mark.parametrize("when", ["during the re-exec", "after it"])
def test_bench_ctrl_c_in_the_re_executed_process(tmp_path, when):
    """The bench re-executes itself (bench.env) unless the environment already has its
    settings: a Ctrl-C during the exec is held until the new process handles it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("REFNET_BENCH_REEXEC", None)
    env = without_cupy(tmp_path / "env", env)  # CuPy's import can swallow the Ctrl-C
    os.makedirs(tmp_path / "out")
    cmd = Command(
        [
            "-m",
            "refnet.bench",
            "--arch",
            "tiny",
            "--batch",
            2,
            "--no-torch",
            "--parts",
            "step",
            "--repeats",
            10000,
            "--json",
            tmp_path / "out" / "r.json",
        ],
        env=env,
    )
    cmd.wait_for(lambda line: line.startswith("bench: re-executing"))  # SIGINT held
    if when == "after it":
        cmd.wait_for(lambda line: line.startswith("step ["))  # timing the steps
    ends_cleanly(cmd, "refnet.bench")
    assert os.listdir(tmp_path / "out") == []


def test_verify_ctrl_c_mid_run_writes_no_report(tmp_path):
    pytest.importorskip("torch")
    os.makedirs(tmp_path / "out")
    cmd = Command(
        [
            "-m",
            "refnet.verify",
            "--only",
            "layers",
            "--size",
            "small",
            "--json",
            tmp_path / "out" / "r.json",
        ],
        env=without_cupy(tmp_path / "env"),
    )
    cmd.wait_for(lambda line: line.startswith("verify ["))  # the first part runs
    ends_cleanly(cmd, "refnet.verify")
    assert os.listdir(tmp_path / "out") == []


def test_verify_without_pytorch_says_how_to_install_it():
    """No ModuleNotFoundError traceback: one line and exit 2 (torch blocked by a None
    entry in sys.modules, which makes ``import torch`` raise ImportError)."""
    code = (
        "import runpy, sys; sys.modules['torch'] = None; "
        "sys.argv = ['verify', '--only', 'sgd']; "
        "runpy.run_module('verify', run_name='__main__', alter_sys=True)"
    )
    cmd = Command(["-c", code])
    rc, out, err = cmd.finish(timeout=60)
    assert rc == 2 and out == [], err
    assert err == [
        "refnet.verify: error: python -m refnet.verify needs PyTorch: pip install -e '.[verify]'"
    ]


def test_a_command_started_to_ignore_ctrl_c_keeps_ignoring_it(tmp_path):
    """A background job of a script starts with SIGINT ignored; the commands keep it so."""
    code = (
        "import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "from refnet.data.cli import run_command; "
        "sys.exit(run_command(lambda: print('ready') or time.sleep(1.5) or 7, 'job'))"
    )
    cmd = Command(["-c", code])
    cmd.wait_for(lambda line: line == "ready", stream="out")
    os.killpg(cmd.proc.pid, signal.SIGINT)
    rc, _, err = cmd.finish()
    assert rc == 7 and err == []


SWALLOWING_IMPORT = """
import os, sys
print("importing", flush=True)
try:
    with open(sys.argv[1]) as fifo:  # blocks until the test writes
        fifo.read(1)
except KeyboardInterrupt:  # as an extension module's initialisation clears an exception
    print("swallowed", flush=True)
print("imported", flush=True)
"""

DRIVER = """
import sys, time
from refnet.data.cli import run_command
def main():
    import swallowing  # noqa: F401
    print("ran on", flush=True)
    time.sleep(60)
    return 0
sys.exit(run_command(main, "driver"))
"""


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux /proc")
def test_a_ctrl_c_during_an_import_is_raised_once_the_import_ends(tmp_path):
    """An import that would swallow the KeyboardInterrupt (numpy.random's first use does,
    in its extension module's initialisation): the press is owed while the import runs,
    then raised. The watcher thread that raises it shows the press was seen mid-import."""
    (tmp_path / "swallowing.py").write_text(SWALLOWING_IMPORT)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    cmd = Command(["-c", DRIVER, fifo], env=env)
    cmd.wait_for(lambda line: line == "importing", stream="out")
    threads = thread_count(cmd.proc.pid)
    cmd.interrupt()
    cmd.wait_until(lambda: thread_count(cmd.proc.pid) > threads)  # the press is owed
    with open(fifo, "w") as writer:  # the import ends
        writer.write("x")
    out, err = ends_cleanly(cmd, "driver", presses=0)
    assert out[:2] == ["importing", "imported"] and "swallowed" not in out
    assert err == ["driver: interrupted"]
