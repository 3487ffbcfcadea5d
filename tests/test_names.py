"""A user's own modules named like refnet's folders break nothing: refnet's packages are
``refnet.layers``, ``refnet.data``, ``refnet.verify`` and ``refnet.bench``, so a
``data.py``, ``layers.py``, ``verify.py``, ``bench.py`` or ``data/`` package in the
working folder is never imported by a refnet command."""

import subprocess
import sys

import pytest

SHADOWS = ("data.py", "layers.py", "verify.py", "bench.py", "data/__init__.py")


@pytest.fixture
def user_folder(tmp_path):
    for name in SHADOWS:
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"raise SystemExit('the user\\'s {name} was imported')\n")
    return tmp_path


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "refnet.summary", "--arch", "tiny"],
        ["-m", "refnet.data.build", "--help"],
        ["-m", "refnet.verify", "--help"],
        ["-m", "refnet.bench", "--help"],
        ["-m", "refnet.train", "--help"],
        ["-m", "refnet", "--version"],
        ["-c", "import refnet, refnet.layers.conv, refnet.data.loader; refnet.AlexNet"],
    ],
)
def test_commands_run_from_a_folder_of_look_alikes(user_folder, args):
    r = subprocess.run(
        [sys.executable, *args], cwd=user_folder, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "was imported" not in r.stderr + r.stdout


def test_the_version_is_the_package_metadata_s():
    from importlib.metadata import version

    import refnet

    assert refnet.__version__ == version("refnet")
