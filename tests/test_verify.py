"""verify/: the PyTorch and fast-path comparisons pass, and the checker can fail.

The comparisons themselves are the tests of refnet against PyTorch (layers at the paper's
settings and at stress, the small networks in eval and train mode, three SGD steps, the
measured conventions) and of the fast paths against ``layers.reference``. The other half
shows the checker is not vacuous: a twin with a convention left untranslated (LRN's
alpha without the factor size, PyTorch's default k, Caffe's ceil rounding, Caffe's
all-channel LRN, the wrong dropout mode), or a wrong reference, is reported FAIL.
"""

import json
import subprocess
import sys

import numpy
import pytest
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from refnet.layers import reference
from refnet.verify import compare, conventions, layer_cases, network, reference_cases, sgd, twins
from refnet.verify.__main__ import main
from refnet.verify.twin_network import TwinAlexNet


def failed(rows):
    return [r for r in rows if r.status == "FAIL"]


# -- the error measure -------------------------------------------------------------------


def test_errors_is_max_abs_over_max_reference():
    ours = numpy.array([1.0, 2.0, -4.0])
    ref = numpy.array([1.0, 2.5, -5.0])
    assert compare.errors(ours, ref) == (1.0, 1.0 / 5.0)


def test_errors_zero_reference():
    z = numpy.zeros(3)
    assert compare.errors(z, z) == (0.0, 0.0)
    assert compare.errors(numpy.array([0, 1e-300, 0]), z)[1] == float("inf")


@given(st.floats(1e-6, 1e6), st.integers(0, 2**32 - 1))
def test_relative_error_is_scale_invariant(c, seed):
    rng = numpy.random.default_rng(seed)
    a, b = rng.standard_normal(20), rng.standard_normal(20)
    assert compare.errors(c * a, c * b)[1] == pytest.approx(compare.errors(a, b)[1], rel=1e-12)


def test_judged_fails_on_shape_and_dtype():
    a = numpy.zeros((2, 3))
    assert compare.judged("p", "c", "y", a, numpy.zeros((3, 2)), 1e-12).status == "FAIL"
    row = compare.judged("p", "c", "y", a, numpy.zeros((2, 3), numpy.float32), 1.0)
    assert row.status == "FAIL" and "dtype" in row.note
    assert compare.judged("p", "c", "y", a, a, 0.0).status == "PASS"


def test_tolerance_table():
    assert compare.tolerance("float64", "layer") == 1e-12
    assert compare.tolerance(numpy.float64, "network") == 1e-10
    with pytest.raises(ValueError, match="float16"):
        compare.tolerance("float16", "layer")


# -- the comparisons pass -----------------------------------------------------------------


def test_layers_match_pytorch(dtype):
    rows = layer_cases.run(dtype, seed=0)
    assert len(rows) > 150
    assert not failed(rows), compare.format_table(failed(rows))
    assert {r.quantity for r in rows} >= {"y", "dx", "dw", "db", "loss", "dlogits"}


def test_layers_report_ties():
    rows = layer_cases.run("float64", seed=1, which=["pool"])
    tied = [r for r in rows if "tied maxima" in r.note]
    assert tied and not failed(rows)


def test_small_network_matches_pytorch(dtype):
    rows = network.run(dtype, seed=0, sizes=("small",))
    assert not failed(rows), compare.format_table(failed(rows))
    cases = {r.case for r in rows}
    assert {
        "tiny N=4 eval",
        "tiny N=4 train",
        "demo N=4 eval",
        "demo N=4 train",
        "tiny N=4 lrn_mode=all train",
        "tiny N=4 dropout_mode=inverted train",
    } <= cases
    grads = {r.quantity for r in rows if r.case == "tiny N=4 train"}
    assert len([q for q in grads if q.startswith("d ")]) == 16
    assert {"logits", "loss"} <= grads


def test_sgd_forms(dtype):
    rows = sgd.run(dtype, seed=0)
    assert not failed(rows), compare.format_table(failed(rows))
    assert len(rows) == 6
    last = rows[-1]
    assert "mu*(lr_new-lr_old)*b" in last.quantity and last.status == "PASS"


def test_conventions(dtype):
    rows = conventions.run(dtype, seed=0)
    assert not failed(rows), compare.format_table(failed(rows))
    by = {(r.case, r.quantity): r for r in rows}
    assert "46-49" in by[("lrn column vs all, 96 ch", "channels that differ")].note
    assert "126-129" in by[("lrn column vs all, 256 ch", "channels that differ")].note
    # left untranslated, PyTorch's LRN is far off at the paper's settings
    assert by[("lrn paper params, |x|~50", "ours vs torch alpha as is")].max_rel > 0.1


def test_fast_paths_match_reference(dtype):
    rows = reference_cases.run(dtype, seed=0)
    assert not failed(rows), compare.format_table(failed(rows))
    assert {r.part for r in rows} == {"reference"}
    cases = " | ".join(r.case for r in rows)
    for word in (
        "im2col NCHW",
        "im2col CHWN",
        "winograd F(4, 5) CHWN",
        "winograd F(5, 3) NCHW",
        "maxpool 3/2 on 55x55",
        "ties",
        "lrn n=5",
        "sgd paper form",
        "sgd pytorch form",
    ):
        assert word in cases, word
    assert {r.quantity for r in rows} == {"y", "dx", "dw", "db", "w", "v"}


# -- the checker can fail -----------------------------------------------------------------


def lrn_untranslated(x, dy, *, size=5, alpha=1e-4, beta=0.75, k=2.0, groups=1):
    tx = twins.tensor(x, True)
    y = F.local_response_norm(tx, size, alpha=alpha, beta=beta, k=k)  # alpha not * size
    (dx,) = twins._grads(y, (tx,), dy)
    return {"y": y.detach().numpy(), "dx": dx}


def lrn_default_k(x, dy, *, size=5, alpha=1e-4, beta=0.75, k=2.0, groups=1):
    tx = twins.tensor(x, True)
    y = F.local_response_norm(tx, size, alpha=alpha * size, beta=beta)  # k left at 1
    (dx,) = twins._grads(y, (tx,), dy)
    return {"y": y.detach().numpy(), "dx": dx}


@pytest.mark.parametrize("wrong", [lrn_untranslated, lrn_default_k])
def test_wrong_lrn_twin_fails(monkeypatch, wrong):
    monkeypatch.setattr(twins, "lrn", wrong)
    rows = layer_cases.run("float64", seed=0, which=["lrn"])
    # PyTorch's default k is 1: only the cases at k=2 (the paper's) can tell
    judged = [
        r for r in rows if r.quantity == "y" and (wrong is lrn_untranslated or "k=2" in r.case)
    ]
    assert len(judged) >= 10 and all(r.status == "FAIL" for r in judged)
    assert main(["--only", "layers", "--quiet"]) == 1


def test_wrong_reference_lrn_fails(monkeypatch):
    """A reference with Caffe's alpha / size: the fast LRN no longer matches it."""
    original = reference.lrn_forward
    monkeypatch.setattr(
        reference,
        "lrn_forward",
        lambda x, *, size, alpha, **kw: original(x, size=size, alpha=alpha / size, **kw),
    )
    rows = reference_cases.run("float64", seed=0, which=["lrn"])
    assert all(r.status == "FAIL" for r in rows if r.quantity == "y")
    assert main(["--only", "reference", "--quiet"]) == 1


def test_ceil_rounding_twin_fails(monkeypatch):
    original = twins.pool
    monkeypatch.setattr(twins, "pool", lambda x, dy, **kw: _ceil_pool(original, x, dy, **kw))
    rows = layer_cases.run("float64", seed=0, which=["pool"])
    floor_54 = [r for r in rows if "54x54" in r.case and r.quantity == "y"]
    assert floor_54 and all(r.status == "FAIL" and "shape" in r.note for r in floor_54)


def _ceil_pool(original, x, dy, *, size, stride):
    """Caffe's ceil rounding: the output is one larger on even sizes; pad dy to match."""
    shape = twins.F.max_pool2d(twins.tensor(x), size, stride, ceil_mode=True).shape
    big = numpy.zeros(tuple(shape), dtype=dy.dtype)
    big[..., : dy.shape[2], : dy.shape[3]] = dy
    return original(x, big, size=size, stride=stride, ceil_mode=True)


def test_wrong_dropout_mode_fails(monkeypatch):
    original = twins.dropout
    swap = {"paper": "inverted", "inverted": "paper"}
    monkeypatch.setattr(
        twins, "dropout", lambda x, dy, *, mode, **kw: original(x, dy, mode=swap[mode], **kw)
    )
    rows = layer_cases.run("float64", seed=0, which=["dropout"])
    assert all(r.status == "FAIL" for r in rows if r.quantity == "y")


def test_all_channel_lrn_twin_fails_against_column_network():
    rng = numpy.random.default_rng(3)
    net, _, state = network.make_pair("tiny", "float64", rng)
    twin = TwinAlexNet(state, network.geometry("tiny"), lrn_mode="all")
    s = 45
    x = rng.standard_normal((2, 3, s, s))
    labels = numpy.array([0, 3])
    rows = network.compare_modes("tiny", net, twin, state, x, labels, None, 1e-10, modes=("eval",))
    by = {r.quantity: r for r in rows}
    assert by["logits"].status == "FAIL"
    assert by["d conv1.weight"].status == "FAIL"
    assert by["d fc8.bias"].status == "FAIL"


# -- the CLI ------------------------------------------------------------------------------


def test_cli_json_and_exit_status(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "refnet.verify",
            "--only",
            "layers,conventions",
            "--dtype",
            "float32",
            "--seed",
            "2",
            "--quiet",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "max rel err" in proc.stdout and "PASS" in proc.stdout
    report = json.loads(out.read_text())
    assert report["passed"] is True
    assert report["dtype"] == "float32" and report["seed"] == 2
    assert report["parts"] == ["layers", "conventions"]
    assert {"part", "case", "quantity", "max_abs", "max_rel", "tol", "status"} <= set(
        report["rows"][0]
    )
    assert {r["part"] for r in report["rows"]} == {"layers", "conventions"}


def test_cli_json_to_stdout(capsys):
    assert main(["--only", "sgd", "--quiet", "--json", "-"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["passed"] and len(report["rows"]) == 6
    assert "max rel err" in captured.err


def test_cli_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--only", "layers,nonsense"])
    assert e.value.code == 2
    assert "nonsense" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--dtype", "float16"])
    assert e.value.code == 2
