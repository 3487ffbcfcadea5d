"""Every CLI answers --help (exit 0, describes its main options) without side effects."""
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module, words", [
    ("refnet.train", ["--data", "--arch", "--resume", "--epochs", "--device", "--no-lrn",
                      "--pool", "--dropout-mode", "--checkpoint-every", "--keep",
                      "--lr-schedule", "--quiet"]),
    ("refnet.evaluate", ["--checkpoint", "--data", "--views"]),
    ("refnet.predict", ["--checkpoint", "IMAGE", "--top"]),
])
def test_help(module, words, tmp_path):
    r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for w in words:
        assert w in r.stdout, (module, w)
    assert list(tmp_path.iterdir()) == []           # --help writes nothing


def test_train_config_table_defaults():
    from refnet.config import TRAIN_DEFAULTS, build_parser, resolve
    cfg, given = resolve(build_parser().parse_args([]))
    assert cfg["arch"] == "demo" and given == {}
    for key, value in TRAIN_DEFAULTS["demo"].items():
        assert cfg[key] == (list(value) if isinstance(value, tuple) else value)
    cfg, given = resolve(build_parser().parse_args(["--arch", "alexnet", "--lr", "0.02"]))
    assert cfg["init"] == "paper" and cfg["input_scale"] == "none" and cfg["lr"] == 0.02
    assert cfg["batch"] == 128 and cfg["epochs"] == 90
