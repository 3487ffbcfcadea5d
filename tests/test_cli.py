"""Every CLI answers --help (exit 0, describes its main options) without side effects;
the commands built on data.cli state each option's default once and list their exit
codes."""

import argparse
import importlib
import subprocess
import sys

import pytest

EXIT_STATUS = ["exit status:", "  2    ", "  130  interrupted (Ctrl-C)"]


@pytest.mark.parametrize(
    "module, words",
    [
        (
            "refnet.train",
            [
                "--data",
                "--arch",
                "--resume",
                "--epochs",
                "--device",
                "--no-lrn",
                "--pool",
                "--dropout-mode",
                "--checkpoint-every",
                "--keep",
                "--lr-schedule",
                "--quiet",
            ],
        ),
        ("refnet.evaluate", ["--checkpoint", "--data", "--views", *EXIT_STATUS]),
        ("refnet.predict", ["--checkpoint", "IMAGE", "--top", *EXIT_STATUS]),
        (
            "refnet.data.build",
            [
                "SRC",
                "--size",
                "--workers",
                "--max-pixels",
                "  1    no usable training",
                *EXIT_STATUS,
            ],
        ),
        (
            "refnet.verify",
            [
                "--only",
                "--dtype",
                "  1    some row fails",
                "PyTorch is not installed",
                *EXIT_STATUS,
            ],
        ),
        ("refnet.bench", ["--arch", "--batch", "--repeats", *EXIT_STATUS]),
        ("refnet.bench.data", ["--images", "--epochs", *EXIT_STATUS]),
    ],
)
def test_help(module, words, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    for w in words:
        assert w in r.stdout, (module, w)
    assert list(tmp_path.iterdir()) == []  # --help writes nothing


PARSERS = {
    "refnet.data.build": "refnet.data.build",
    "refnet.evaluate": "refnet.evaluate",
    "refnet.predict": "refnet.predict",
    "refnet.verify": "refnet.verify.__main__",
    "refnet.bench": "refnet.bench.__main__",
    "refnet.bench.data": "refnet.bench.data",
}


@pytest.mark.parametrize("command", PARSERS)
def test_every_option_states_its_default_once(command):
    parser = importlib.import_module(PARSERS[command]).build_parser()
    options = [
        a
        for a in parser._actions
        if a.option_strings
        and a.help != argparse.SUPPRESS
        and not isinstance(a, argparse._HelpAction)
    ]
    assert options
    for a in options:
        if a.required:
            assert "(required)" in a.help, (command, a.dest)
        else:
            assert a.help.count("default") == 1 and "None" not in a.help, (command, a.help)
    assert parser.epilog.splitlines()[0] == "exit status:"
    codes = [
        line.split()[0] for line in parser.epilog.splitlines()[1:] if not line.startswith(" " * 7)
    ]
    assert codes[0] == "0" and codes[-2:] == ["2", "130"], (command, codes)


def test_train_config_table_defaults():
    from refnet.config import TRAIN_DEFAULTS, build_parser, resolve

    cfg, given = resolve(build_parser().parse_args([]))
    assert cfg["arch"] == "demo" and given == {}
    for key, value in TRAIN_DEFAULTS["demo"].items():
        assert cfg[key] == value
    cfg, given = resolve(build_parser().parse_args(["--arch", "alexnet", "--lr", "0.02"]))
    assert cfg["init"] == "paper" and cfg["input_scale"] == "none" and cfg["lr"] == 0.02
    assert cfg["batch"] == 128 and cfg["epochs"] == 90
