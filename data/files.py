"""Writing a file so that no reader ever sees it half-written; clearing what killed writers left.

    with atomic_path(path) as tmp:      # tmp = <folder of path>/.<name>.tmp-<pid>
        ...write tmp: open(), h5py.File(tmp, "w"), fig.savefig(tmp, ...)...
    # normal exit: tmp is fsynced, os.replace-d onto path, and the folder fsynced;
    # any exception (KeyboardInterrupt included): tmp is removed and the exception
    # re-raised, and whatever was at path is left as it was

    write_text(path, text)                      # both through atomic_path
    write_json(path, obj, *, indent=1)          # JSON text and a final newline
    remove_stale_temporaries(folder, names)     # .<name>.tmp-<pid> of processes now gone

The steps of ``atomic_path`` are also here on their own for a writer that keeps a file
open across calls and commits later (``data.store.StoreWriter``): ``temporary_path``,
``sync_file``, ``commit`` and ``discard``.

Why it is safe: ``os.replace`` within one folder is atomic on POSIX, so ``path`` names
either the old file or the complete new one; the fsync of the data before the rename and
of the folder after it keeps that true across a power cut. The temporary lives in the
same folder (a rename cannot cross file systems) under a hidden name that says which
process writes it, so a later run can tell a dead writer's leftover from a live one's
file. One process writes one ``path`` at a time: two threads writing the same ``path``
would share the temporary name.
"""

import json
import os
import re
from contextlib import contextmanager


def temporary_path(path):
    """``<folder>/.<name>.tmp-<pid>``: where this process writes ``path`` before committing."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f".{name}.tmp-{os.getpid()}")


def sync_file(path):
    """Flush the file's data to the disk (``os.fsync``)."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def sync_folder(folder):
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


def commit(tmp, path):
    """Replace ``path`` by the finished temporary ``tmp``: fsync it, rename, fsync the folder."""
    sync_file(tmp)
    os.replace(tmp, path)
    sync_folder(os.path.dirname(os.fspath(path)))


def discard(tmp):
    """Remove the temporary ``tmp`` if it is there (after an error); never raises."""
    try:
        os.remove(tmp)
    except OSError:
        pass


@contextmanager
def atomic_path(path):
    """Yield a temporary path (str) to write; on normal exit it replaces ``path``.

    On any exception in the body or in the commit (Ctrl-C included) the temporary is
    removed and the exception re-raised; ``path`` keeps its old contents or stays absent.
    """
    tmp = temporary_path(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)


def write_json(path, obj, *, indent=1):
    """Write ``obj`` as JSON (``json.dumps(obj, indent=indent)`` and a newline) atomically."""
    write_text(path, json.dumps(obj, indent=indent) + "\n")


_TEMPORARY = re.compile(r"\.(.+)\.tmp-(\d+)")


def remove_stale_temporaries(folder, names=None):
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


def process_running(pid):
    """Whether process ``pid`` exists (or cannot be checked: another user's)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether pid exists
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process, or no pid at all:
        return True  # leave it alone
    return True
