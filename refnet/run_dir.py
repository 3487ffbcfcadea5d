"""The run folder: a name of its own, one run at a time in it, and what a killed run left.

    folder, lock, created = claim(out or default_name(arch), unique=out is None)  # locked
    ...train...
    lock.release()        # or the kernel releases it when the process ends

- **Names.** With no ``--out`` the folder is ``runs/<arch>-<YYYYmmdd-HHMMSS>``; when that
  exists (two runs started in the same second), ``-2``, ``-3``, ... is appended. The
  folder is made with an exclusive ``mkdir``, so two processes never get the same one.
- **One run per folder.** A run holds an exclusive ``fcntl.flock`` on ``RUN_DIR/.lock``
  for as long as it lives. The lock belongs to the open file, so the kernel drops it when
  the process ends in any way (SIGKILL included): a killed run leaves no stale lock. The
  holder writes its process id, host, start time and command line into the file, and a
  second run on the folder is refused with a message naming them.
- **Failures.** A folder that cannot be made or locked (a file in the way, a read-only
  file system, a ``.lock`` that is no file) or a disk too full for the lock's few bytes
  is ``RunDirError``, one line naming the path; a folder made for the run is removed
  again, and the lock file holds the holder's record whole or nothing.
- **Leftovers.** ``trim_log`` cuts ``log.jsonl`` back to the records of steps a
  checkpoint holds (a run killed after logging but before its next checkpoint would
  otherwise repeat those records when resumed). Temporaries of killed writers are removed
  with ``data.files.remove_stale_temporaries``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from refnet.data.cli import UserError, unwritable_reason
from refnet.data.files import write_failure, write_text

LOCK_NAME = ".lock"


class RunDirError(UserError):
    """A run folder that cannot be made, locked or written: one line naming the path."""


class RunDirBusy(RunDirError):
    """Another live process holds the run folder."""


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``RUN_DIR/.lock``; ``RunDirBusy`` if held."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(f"cannot lock the run folder {run_dir}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirBusy(
                f"{run_dir} is in use by another run ({holder}); wait for it "
                "to end or choose another --out"
            ) from None
        except OSError as e:  # a file system without locks
            os.close(fd)
            raise RunDirError(f"cannot lock the run folder {run_dir}: {e.strerror}") from None
        self.fd: int | None = fd
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": sys.argv,
        }
        record = (json.dumps(info) + "\n").encode()
        try:
            if os.pwrite(fd, record, 0) != len(record):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.ftruncate(fd, len(record))
        except OSError as e:  # a full disk: no record rather than part of one
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            self.release()
            raise RunDirError(str(write_failure(self.path, e))) from None

    def release(self) -> None:
        """Drop the lock (the file stays; it is free as soon as no process holds it)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    return (
        f"process {info.get('pid')} on {info.get('host')}, started {info.get('started')}:"
        f" {' '.join(map(str, info.get('command', [])))}"
    )


def default_name(arch: str, root: str | Path = "runs") -> str:
    """``runs/<arch>-<YYYYmmdd-HHMMSS>``: the folder a run without ``--out`` asks for."""
    return str(Path(root) / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}")


def claim(path: str | Path, *, unique: bool) -> tuple[Path, RunLock, bool]:
    """``(folder, lock, created)``: the run folder made (if needed) and locked.

    ``unique``: the name is a default one: if it exists, ``-2``, ``-3``, ... is appended
    until an exclusive ``mkdir`` succeeds. Otherwise the folder may exist (it is then
    used as it is). ``RunDirBusy`` when another run holds it; a folder made here is
    removed again then."""
    path = Path(path)
    created = False
    try:
        if unique:
            base, k = path, 1
            while not created:
                try:
                    path.mkdir(parents=True)
                    created = True
                except FileExistsError:
                    if not base.parent.is_dir():  # a file in the way, not a taken name
                        raise
                    k += 1
                    path = base.with_name(f"{base.name}-{k}")
        elif not path.is_dir():
            path.mkdir(parents=True)
            created = True
    except OSError as e:
        reason = unwritable_reason(path) or e.strerror
        raise RunDirError(f"no run folder can be made at {path}: {reason}") from None
    try:
        return path, RunLock(path), created
    except BaseException:
        if created:
            remove_if_empty(path)
        raise


def remove_if_empty(path: str | Path) -> None:
    """Remove a run folder that holds nothing but its lock file (a refused start)."""
    path = Path(path)
    try:
        (path / LOCK_NAME).unlink(missing_ok=True)
        path.rmdir()
    except OSError:
        pass


def trim_log(run_dir: str | Path, step: int) -> int:
    """Keep only the records of ``log.jsonl`` up to ``step`` (rewritten atomically);
    returns the number of records dropped."""
    log = Path(run_dir) / "log.jsonl"
    if not log.is_file():
        return 0
    kept, dropped = [], 0
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by a kill
            dropped += 1
            continue
        if record.get("step", 0) <= step:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        write_text(log, "".join(line + "\n" for line in kept))
    return dropped
