"""data.cli, what the command lines share: one-line errors for bad flag values at parse
time, the exit codes in --help, and the end on Ctrl-C (a second one ends a clean-up that
hangs; one that Python swallows in a ``__del__`` is raised again)."""

import argparse
import time

import pytest

from refnet.data.cli import Parser, existing_file, int_at_least, nonnegative_int, positive_int
from tests.interrupts import Command


def parser():
    p = Parser(prog="prog", description="A command.", exit_codes={0: "done", 1: "failed"})
    p.add_argument("--n", type=positive_int, default=1, help="a count (default 1)")
    p.add_argument("--k", type=nonnegative_int, default=0, help="an offset (default 0)")
    p.add_argument("--m", type=int_at_least(10), default=10, help="at least 10 (default 10)")
    p.add_argument("--file", type=existing_file, help="a file (default: none)")
    return p


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n", "0"], "argument --n: must be >= 1, got '0'"),
        (["--n", "-3"], "argument --n: must be >= 1, got '-3'"),
        (["--n", "two"], "argument --n: expected an integer, got 'two'"),
        (["--k", "-1"], "argument --k: must be >= 0, got '-1'"),
        (["--m", "9"], "argument --m: must be >= 10, got '9'"),
        (["--file", "/no/such/file"], "argument --file: '/no/such/file' does not exist"),
        (["--file", "."], "argument --file: '.' is a directory, not a file"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_a_bad_value_is_one_line_naming_it_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        parser().parse_args(argv)
    assert e.value.code == 2
    assert capsys.readouterr().err == f"prog: error: {message} (see --help)\n"


def test_good_values_pass(tmp_path):
    (tmp_path / "f").write_text("x")
    args = parser().parse_args(["--n", "3", "--k", "0", "--m", "10", "--file", str(tmp_path / "f")])
    assert (args.n, args.k, args.m, args.file) == (3, 0, 10, str(tmp_path / "f"))


def test_help_ends_with_the_exit_codes():
    text = parser().format_help()
    epilog = text[text.index("exit status:") :].splitlines()
    assert [line.split()[0] for line in epilog[1:] if not line.startswith(" " * 7)] == [
        "0",
        "1",
        "2",
        "130",
    ]
    assert epilog[1:3] == ["  0    done", "  1    failed"]
    assert epilog[-1] == "  130  interrupted (Ctrl-C); nothing is left half-written"


def test_the_types_raise_argparse_errors():
    for bad in ("0", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)


CLEAN_UP_HANGS = """
import sys, time
from refnet.data.cli import run_command
def main():
    try:
        print("working", flush=True)
        time.sleep(60)
    finally:
        print("cleaning up", flush=True)
        time.sleep(60)                       # a clean-up that hangs
sys.exit(run_command(main, "demo"))
"""


def test_a_second_ctrl_c_ends_a_clean_up_that_hangs():
    cmd = Command(["-c", CLEAN_UP_HANGS])
    cmd.wait_for(lambda line: line == "working", stream="out")
    cmd.interrupt()
    cmd.wait_for(lambda line: line == "cleaning up", stream="out")
    cmd.interrupt()
    rc, _, err = cmd.finish(timeout=10)
    assert rc == 130 and err == ["demo: interrupted again; stopping now"]


SWALLOWED = """
import sys, time
from refnet.data.cli import run_command
class Slow:
    def __del__(self):
        print("in __del__", flush=True)
        time.sleep(2)                        # Ctrl-C lands here: Python swallows it
def main():
    Slow()
    time.sleep(60)                           # without the re-raise: a minute
    return 0
sys.exit(run_command(main, "demo"))
"""


def test_a_ctrl_c_swallowed_in_a_del_is_raised_again():
    cmd = Command(["-c", SWALLOWED])
    cmd.wait_for(lambda line: line == "in __del__", stream="out")
    cmd.interrupt()
    rc, _, err = cmd.finish(timeout=15)
    assert rc == 130 and err == ["demo: interrupted"], err


def test_worker_processes_die_with_a_hard_exit(tmp_path):
    """A second Ctrl-C that ends the process at once kills its multiprocessing workers
    (which ignore SIGINT), instead of leaving them running without a parent."""
    code = f"""
import multiprocessing, os, sys, time
from refnet.data.cli import ignore_interrupts, run_command, starting_workers
def main():
    with starting_workers():
        pool = multiprocessing.get_context("spawn").Pool(2, initializer=ignore_interrupts)
    pids = [p.pid for p in pool._pool]
    open({str(tmp_path / "pids")!r}, "w").write(" ".join(map(str, pids)))
    try:
        pool.map(time.sleep, [60, 60])
    finally:
        print("cleaning up", flush=True)
        time.sleep(60)
sys.exit(run_command(main, "demo"))
"""
    cmd = Command(["-c", code])
    cmd.wait_until(lambda: (tmp_path / "pids").exists() and (tmp_path / "pids").read_text())
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    cmd.interrupt()
    cmd.wait_for(lambda line: line == "cleaning up", stream="out")
    cmd.interrupt()
    rc, _, err = cmd.finish(timeout=10)
    # multiprocessing's resource tracker may then warn that the pool's semaphores leaked
    assert rc == 130 and err[0] == "demo: interrupted again; stopping now", err
    assert not any("Traceback" in line for line in err), err
    deadline = time.monotonic() + 10  # SIGKILLed: gone once the kernel reaps them
    for pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(pid), pid


def _alive(pid):
    """Whether ``pid`` runs (a zombie waiting for its new parent to reap it does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
