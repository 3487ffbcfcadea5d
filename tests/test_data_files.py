"""data.files: a good file is never replaced by a half-written one; dead writers' leftovers go."""

import json
import os
import signal
import subprocess
import sys

import pytest

from refnet.data.files import (
    OutputError,
    atomic_path,
    remove_stale_temporaries,
    temporary_path,
    write_json,
    write_text,
)


def test_commit_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with atomic_path(path) as tmp:
        assert tmp == str(tmp_path / f".a.txt.tmp-{os.getpid()}") == temporary_path(path)
        with open(tmp, "w") as fh:
            fh.write("new")
        assert path.read_text() == "old"  # nothing visible before the commit
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_error_mid_write_keeps_old_file_and_removes_temporary(tmp_path, error):
    path = tmp_path / "a.json"
    write_json(path, {"good": 1})
    before = path.read_bytes()
    with pytest.raises(error):
        with atomic_path(path) as tmp:
            with open(tmp, "w") as fh:
                fh.write('{"half": ')
            raise error("interrupted mid-write")
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.json"]
    with pytest.raises(error):  # a new file: nothing appears at all
        with atomic_path(tmp_path / "b.json") as tmp:
            open(tmp, "w").close()
            raise error("interrupted")
    assert os.listdir(tmp_path) == ["a.json"]


def test_failed_commit_leaves_nothing(tmp_path):
    with pytest.raises(OutputError, match="a.txt: No such file"):  # no temporary written
        with atomic_path(tmp_path / "a.txt"):
            pass
    assert os.listdir(tmp_path) == []


def test_write_text_and_json(tmp_path):
    write_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    write_json(str(tmp_path / "j.json"), {"a": [1, 2.5, None]})
    text = (tmp_path / "j.json").read_text()
    assert text.endswith("}\n") and json.loads(text) == {"a": [1, 2.5, None]}
    assert sorted(os.listdir(tmp_path)) == ["j.json", "t.txt"]


def test_killed_writer_leaves_old_file_and_its_temporary_is_cleared(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"good")
    code = (
        "import os, signal, sys\n"
        "from refnet.data.files import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    open(tmp, 'wb').write(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    child = subprocess.run([sys.executable, "-c", code, str(path)], timeout=60)
    assert child.returncode == -signal.SIGKILL
    stale = [n for n in os.listdir(tmp_path) if n.startswith(".x.h5.tmp-")]
    assert len(stale) == 1 and path.read_bytes() == b"good"

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        keep = [
            f".x.h5.tmp-{live.pid}",
            f".x.h5.tmp-{os.getpid()}",
            ".y.h5.tmp-1",
            ".x.h5.tmp-",
            "x.h5.tmp-5",
        ]
        for name in keep:
            (tmp_path / name).write_bytes(b"")
        other = tmp_path / stale[0].replace(".x.h5.", ".y.h5.")
        other.write_bytes(b"")  # dead writer, but not a name asked for
        assert remove_stale_temporaries(tmp_path, names=("x.h5",)) == stale
        assert sorted(os.listdir(tmp_path)) == sorted(keep + [other.name, "x.h5"])
        assert remove_stale_temporaries(tmp_path) == [other.name]
    finally:
        live.kill()
        live.wait()
    assert path.read_bytes() == b"good"
