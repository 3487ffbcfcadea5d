"""Writing a file so that no reader ever sees it half-written; clearing what killed writers left.

    with atomic_path(path) as tmp:      # tmp = <folder of path>/.<name>.tmp-<pid>
        ...write tmp: open(), h5py.File(tmp, "w"), fig.savefig(tmp, ...)...
    # normal exit: tmp is fsynced, os.replace-d onto path, and the folder fsynced;
    # any exception (KeyboardInterrupt included): tmp is removed and the exception
    # re-raised, and whatever was at path is left as it was

    write_text(path, text)                      # both through atomic_path
    write_json(path, obj, *, indent=1)          # JSON text and a final newline
    append_text(path, text)                     # all of text at the end, or nothing
    remove_stale_temporaries(folder, names)     # .<name>.tmp-<pid> of processes that have ended

A write that fails (a full disk, a read-only or vanished folder) raises ``OutputError``,
a ``UserError`` (a command ends with exit status 2 and one line) that names the user's
path, never the temporary, and says "the disk is full" when it is (``write_failure``).
An HDF5 file whose writing failed is closed with ``abandon_hdf5`` before the error goes
on (HDF5 would otherwise retry its flush until the interpreter crashes at exit).

Committed files get the permissions of any new file (0666 less the umask), whatever
mode the writing library gave its temporary.

The steps of ``atomic_path`` are also here on their own for a writer that keeps a file
open across calls and commits later (``data.store.StoreWriter``): ``temporary_path``,
``sync_file``, ``commit`` and ``discard``.

One process writes one ``path`` at a time: two threads writing the same ``path`` would
share the temporary name. Why it is safe: docs/architecture.md, "data".
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

from refnet.data.cli import UserError

_FULL = (errno.ENOSPC, errno.EDQUOT)


class OutputError(UserError):
    """A file that could not be written (the disk full, the folder read-only or gone);
    the message is one line naming the file the user asked for."""


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (an ``OSError``, or HDF5's ``RuntimeError``, which carries the
    system's errno only in its text) says the device has no space left."""
    text = str(error)
    return (
        getattr(error, "errno", None) in _FULL
        or "No space left on device" in text
        or "Disk quota exceeded" in text
        or "errno = 28" in text
    )


def write_failure(path: str | os.PathLike[str], error: BaseException) -> OutputError:
    """The ``OutputError`` for ``error`` raised while writing ``path``: one line, the
    user's path, and what to do."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    if is_disk_full(error):
        return OutputError(
            f"the disk is full: no space left on the device to write {path} (free space "
            f"in {folder}; the files already there are intact)"
        )
    reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
    return OutputError(f"cannot write {path}: {reason}")


def abandon_hdf5(h5file: Any, tmp: str) -> None:
    """Close ``h5file`` (an ``h5py.File`` being written to ``tmp``) after a failed write
    and remove ``tmp``. The temporary is emptied first, so that on a full disk the close
    has room for its last small flush and succeeds; never raises."""
    try:
        os.truncate(tmp, 0)
    except OSError:
        pass
    for _ in range(2):  # a close that fails half-way may succeed the second time
        try:
            h5file.close()
            break
        except Exception:  # noqa: BLE001, S112 - best effort after the real error
            continue
    discard(tmp)


def _new_file_mode():
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


NEW_FILE_MODE = _new_file_mode()  # read once: os.umask cannot be read without setting it


def temporary_path(path: str | os.PathLike[str]) -> str:
    """``<folder>/.<name>.tmp-<pid>``: where this process writes ``path`` before committing."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f".{name}.tmp-{os.getpid()}")


def sync_file(path: str | os.PathLike[str]) -> None:
    """Flush the file's data to the disk (``os.fsync``)."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def sync_folder(folder: str) -> None:
    """Flush a folder's entries (a rename in it) to the disk; best effort, never raises."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit(tmp: str, path: str | os.PathLike[str]) -> None:
    """Replace ``path`` by the finished temporary ``tmp``: fsync it, give it a new file's
    permissions, rename, fsync the folder."""
    sync_file(tmp)
    os.chmod(tmp, NEW_FILE_MODE)
    os.replace(tmp, path)
    sync_folder(os.path.dirname(os.fspath(path)))


def discard(tmp: str) -> None:
    """Remove the temporary ``tmp`` if it is there (after an error); never raises."""
    try:
        os.remove(tmp)
    except OSError:
        pass


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path (str) to write; on normal exit it replaces ``path``.

    On any exception in the body or in the commit (Ctrl-C included) the temporary is
    removed and the exception re-raised; ``path`` keeps its old contents or stays absent.
    An ``OSError`` (or HDF5's "no space" ``RuntimeError``) becomes ``OutputError``
    naming ``path`` (``write_failure``).
    """
    tmp = temporary_path(path)
    try:
        yield tmp
        commit(tmp, path)
    except OSError as e:
        discard(tmp)
        raise write_failure(path, e) from None
    except RuntimeError as e:
        discard(tmp)
        if is_disk_full(e):
            raise write_failure(path, e) from None
        raise
    except BaseException:
        discard(tmp)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON (``json.dumps(obj, indent=indent)`` and a newline) atomically."""
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` (UTF-8) to ``path`` (created if absent): all of it or, when the
    write fails, nothing (the file is cut back to its old length; ``OutputError``)."""
    data = memoryview(text.encode("utf-8"))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as e:
        raise write_failure(path, e) from None
    try:
        start = os.fstat(fd).st_size
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError as e:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise write_failure(path, e) from None
    finally:
        os.close(fd)


_TEMPORARY = re.compile(r"\.(.+)\.tmp-(\d+)")


def remove_stale_temporaries(folder: str, names: Collection[str] | None = None) -> list[str]:
    """Delete the temporaries in ``folder`` whose writing process is gone; returns their names.

    A temporary is ``.<name>.tmp-<pid>`` (``temporary_path``); with ``names`` only those of
    the given final names are considered. One whose process still runs (or cannot be
    checked, as another user's) is left alone, and so is this process's own.
    """
    removed = []
    for entry in sorted(os.listdir(folder)):
        m = _TEMPORARY.fullmatch(entry)
        if m is None or (names is not None and m.group(1) not in names):
            continue
        pid = int(m.group(2))
        if pid == os.getpid() or process_running(pid):
            continue
        try:
            os.remove(os.path.join(folder, entry))
        except OSError:
            continue
        removed.append(entry)
    return removed


def process_running(pid: int) -> bool:
    """Whether process ``pid`` exists (or cannot be checked: another user's)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether pid exists
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process, or no pid at all:
        return True  # leave it alone
    return True
