"""Running a command line as a terminal does, and pressing Ctrl-C in it, for the tests.

    cmd = Command(["-m", "refnet.data.build", src, out])     # python -m ..., in its own session
    cmd.wait_for(lambda line: line.startswith("build train"))   # a stderr line
    cmd.wait_until(lambda: os.path.exists(path))       # or any condition
    cmd.interrupt()                                    # Ctrl-C: SIGINT to the whole group
    rc, out, err = cmd.finish(timeout=20)              # a hang fails the test, killed

A terminal sends Ctrl-C's SIGINT to every process of the foreground process group, the
command's worker processes included; the command here leads its own group (a new
session), so ``interrupt`` does the same with ``os.killpg``.
"""

import os
import signal
import subprocess
import sys
import threading
import time


def cpu_seconds(pid):
    """CPU time (user + system) process ``pid`` has used so far (Linux: /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def without_cupy(folder, env=None):
    """``env`` (default: this one) where ``import cupy`` fails at once, through a stub
    package in ``folder``: its import (the layers' first call, a second or so) is a
    window where a library swallows Ctrl-C, which a test must not interrupt."""
    stub = folder / "no_cupy" / "cupy"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('CuPy hidden by the test')\n")
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(stub.parent), env.get("PYTHONPATH")]))
    return env


class Command:
    def __init__(self, args, *, env=None, cwd=None):
        env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, *map(str, args)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines = {"out": [], "err": []}
        self.readers = [
            threading.Thread(target=self._read, args=(stream, self.lines[key]), daemon=True)
            for key, stream in (("out", self.proc.stdout), ("err", self.proc.stderr))
        ]
        for t in self.readers:
            t.start()

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_for(self, ready, *, timeout=60, stream="err"):
        """Wait until a line of ``stream`` ("err" or "out") satisfies ``ready``."""
        self.wait_until(
            lambda: any(ready(line) for line in list(self.lines[stream])), timeout=timeout
        )

    def wait_until(self, ready, *, timeout=60):
        """Wait until ``ready()`` is true while the command runs (the test fails if it
        ends first or ``timeout`` seconds pass)."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    f"never ready (exit {self.proc.returncode}); stderr:\n"
                    + "\n".join(self.lines["err"])
                )
            time.sleep(0.02)

    def interrupt(self):
        """Ctrl-C: SIGINT to the command's whole process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def finish(self, timeout=20):
        """``(exit status, stdout lines, stderr lines)`` once the command ends; a command
        still running after ``timeout`` seconds is killed and the test fails."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"still running {timeout} s later; stderr:\n" + "\n".join(self.lines["err"])
            ) from None
        for t in self.readers:
            t.join(timeout=5)
        return self.proc.returncode, self.lines["out"], self.lines["err"]

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def ends_cleanly(cmd, name, timeout=20, presses=1):
    """Interrupt ``cmd`` (``presses`` Ctrl-C, 50 ms apart) and check the end: exit 130
    within ``timeout`` seconds, the last stderr line from ``name`` saying it was
    interrupted, no traceback. Returns (stdout lines, stderr lines)."""
    start = time.monotonic()
    for i in range(presses):
        if i:
            time.sleep(0.05)
        try:
            cmd.interrupt()
        except ProcessLookupError:  # already ended
            pass
    rc, out, err = cmd.finish(timeout)
    assert rc == 130, (rc, err)
    assert not any("Traceback" in line for line in err), "\n".join(err)
    assert err and err[-1].startswith(f"{name}: interrupted"), "\n".join(err)
    assert time.monotonic() - start < timeout
    return out, err
