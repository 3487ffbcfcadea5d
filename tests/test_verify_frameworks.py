"""``python -m refnet.verify --against``: the registry of frameworks, the one table across them
(a column per framework, a framework that cannot run shown as skipped with its reason,
never dropped), the exit status, and how rows map to (layer, direction). The
frameworks here are stand-in modules with hand-made rows, so nothing heavy runs."""

import json
import sys
import types

import pytest

from refnet.verify import frameworks
from refnet.verify.__main__ import main
from refnet.verify.compare import Row
from refnet.verify.framework_table import direction_of, format_framework_table, layer_of


def row(part, case, quantity, rel, status="PASS"):
    return Row(part, case, quantity, rel, rel, 1e-12, status)


GOOD = [
    row("a", "conv1 11x11/4 pad 0, 3->96 (paper)", "y", 2e-15),
    row("a", "conv1 11x11/4 pad 0, 3->96 (paper)", "dw", 4e-15),
    row("a", "maxpool 3/2 on 13x10", "dx", 0.0),
    row("a", "tiny N=4 train", "d fc8.bias", 3e-14),
]
BAD = [
    row("c", "lrn n=5 alpha=1 beta=0.75 k=1, 10 ch", "y", 0.3, "FAIL"),
    row("c", "lrn n=5 alpha=1 beta=0.75 k=1, 10 ch", "dx", 1e-16),
]


def fake(name, rows=(), reason=None):
    return types.SimpleNamespace(
        NAME=name,
        TITLE=name.upper(),
        version=lambda: "1.0",
        available=lambda: reason,
        run=lambda dtype, seed: list(rows),
    )


@pytest.fixture
def registry(monkeypatch):
    """Three stand-in frameworks: a (passes), b (not installed), c (one failing row)."""
    entries = {
        "a": fake("a", GOOD),
        "b": fake("b", reason="b is not installed"),
        "c": fake("c", BAD),
    }
    for name, module in entries.items():
        monkeypatch.setitem(sys.modules, f"verify.fake_{name}", module)
    monkeypatch.setattr(frameworks, "MODULES", {n: f"verify.fake_{n}" for n in entries})
    return entries


def test_rows_map_to_layer_and_direction():
    cases = [
        (row("layers", "conv1 11x11/4 pad 0", "dw", 0), ("conv", "bwd")),
        (row("layers", "maxpool 3/2 ties (ints 0-2)", "y", 0), ("pool", "fwd")),
        (row("layers", "softmax CE, logits x30", "dlogits", 0), ("softmax", "bwd")),
        (row("network", "alexnet N=2 eval", "logits", 0), ("network", "fwd")),
        (row("jax", "tiny N=4 train", "d conv1.weight", 0), ("network", "bwd")),
        (row("jax", "lrn n=3 alpha=0.1 beta=0.75 k=1, 10 ch", "dx", 0), ("lrn", "bwd")),
        (
            row("onnxruntime", "tiny b3 reference evaluator", "dropout_fc6", 0),
            ("dropout", "fwd"),
        ),  # one layer's output inside the net
        (row("onnxruntime", "alexnet b2", "relu_fc7", 0), ("relu", "fwd")),
        (row("onnxruntime", "alexnet b2", "fc8", 0), ("linear", "fwd")),
        (row("onnxruntime", "alexnet b2", "logits", 0), ("network", "fwd")),
        (row("onnxruntime", "alexnet b2", "to_conv3", 0), ("network", "fwd")),
        (row("sgd", "tiny step 1 lr=0.01", "w, paper form vs torch", 0), ("sgd", "-")),
        (row("reference", "lrn n=5 CHWN", "dx", 0), ("reference", "bwd")),
    ]
    for r, expected in cases:
        assert (layer_of(r), direction_of(r)) == expected, r


def test_table_has_a_column_per_framework_and_the_worst_cell():
    text = format_framework_table(
        {"a": GOOD, "c": BAD}, {"b": "not built"}, {"a": "A 1.0", "c": "C 2.0"}
    )
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "dir", "a", "c", "b"]
    assert "A 1.0" in lines[1] and "C 2.0" in lines[1] and "skipped (not built)" in lines[1]
    by = {tuple(line.split()[:2]): line.split()[2:] for line in lines[3:]}
    assert by[("conv", "fwd")] == ["2.0e-15", "PASS", "-", "skipped"]
    assert by[("conv", "bwd")] == ["4.0e-15", "PASS", "-", "skipped"]
    assert by[("lrn", "fwd")] == ["-", "3.0e-01", "FAIL", "skipped"]
    assert by[("network", "bwd")] == ["3.0e-14", "PASS", "-", "skipped"]
    assert "b: skipped (not built)" in lines
    assert "c: 1 passed, 1 failed" in lines


def test_cli_one_table_skipped_framework_shown(registry, capsys):
    assert main(["--against", "b,a", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "refnet vs A 1.0" in out
    header = out.splitlines()[2].split()
    assert header == ["layer", "dir", "b", "a"]  # the order asked for
    assert "skipped (b is not installed)" in out.splitlines()[3]
    assert "b: skipped (b is not installed)" in out


def test_cli_fails_on_a_failing_row_and_lists_it(registry, capsys):
    assert main(["--against", "a,c", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "failing rows:" in out
    failing = out.split("failing rows:")[1]
    assert "lrn n=5 alpha=1" in failing and "FAIL" in failing


def test_cli_json_names_the_framework_of_each_row(registry, capsys):
    assert main(["--against", "c,a,b", "--quiet", "--json", "-"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["frameworks"] == {"c": "C 1.0", "a": "A 1.0", "b": "skipped (b is not installed)"}
    assert [r["framework"] for r in report["rows"]] == ["c"] * 2 + ["a"] * 4
    assert report["passed"] is False


def test_cli_nothing_to_compare_with_is_a_usage_error(registry, capsys):
    assert main(["--against", "b", "--quiet"]) == 2
    assert "b: b is not installed" in capsys.readouterr().err


def test_unknown_framework_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--against", "torch,nosuch"])
    assert e.value.code == 2
    assert "nosuch" in capsys.readouterr().err


def test_a_module_not_built_is_skipped(monkeypatch):
    monkeypatch.setitem(frameworks.MODULES, "onnxruntime", "refnet.verify.against_nothing_yet")
    module = frameworks.load("onnxruntime")
    assert module.available() == "not built" and module.run("float64", 0) == []


def test_default_is_torch_alone():
    assert frameworks.DEFAULT == ("torch",)
    assert frameworks.parse("jax, torch,jax") == ["jax", "torch"]
    with pytest.raises(ValueError, match="'bogus'"):
        frameworks.parse("bogus")
