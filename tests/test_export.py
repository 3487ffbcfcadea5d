"""ONNX export (refnet.export): the graph is valid, ONNX Runtime (float32) and onnx's
reference evaluator (float64) compute refnet's numbers layer by layer for every option,
a wrong LRN, dropout or column conversion is caught, and the command line."""

import json
import subprocess
import sys

import numpy
import pytest

from refnet import NetOptions, build_network, checkpoint, export, nodes
from refnet.verify.compare import errors

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from refnet.verify.against_onnxruntime import (  # noqa: E402 (after the skip: needs onnx)
    BASE,
    VARIANTS,
    random_weights,  # noqa: E402
    run_model,
    spec_lrn,
)

F32, F64 = 1e-5, 1e-12  # the bounds on max|a - b| / max|b| (verify.compare.errors)


def make(arch="tiny", dtype="float64", seed=0, **changes):
    """(net, x): random weights (N(0, 1/fan_in)) and images, LRN's alpha 0.025 and
    dropout 0.3 so that every term of both shows (verify.against_onnxruntime.BASE)."""
    rng = numpy.random.default_rng(seed)
    net = build_network(NetOptions(arch=arch, dtype=dtype, **{**BASE, **changes}))
    net.load_state_dict(random_weights(net.shapes, rng, dtype))
    s = net.spec.input_size
    return net, rng.standard_normal((3, 3, s, s)).astype(dtype)


def rel(ours, theirs):
    return errors(ours, theirs)[1]


def run_export(net, x, outputs=()):
    return run_model(export.onnx_model(net, outputs=outputs), x)


def assert_outputs_match(net, x, bound):
    """The exported model's logits and probabilities for x against the net's."""
    got = run_export(net, x)
    assert rel(got["logits"], net.forward(x)) <= bound
    assert rel(got["probabilities"], net.predict_proba(x)) <= bound


def test_the_graph_is_valid_and_carries_the_options():
    net, _ = make(dtype="float32")
    model = export.onnx_model(net)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta[export.OPTIONS_KEY]) == net.options.to_dict()
    assert meta[export.VERSION_KEY] == export.refnet_version() != ""
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "input" and dims[0].dim_param == "N"
    assert [d.dim_value for d in dims[1:]] == [3, 45, 45]
    assert [o.name for o in model.graph.output] == ["logits", "probabilities"]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("columns, groups", [(2, [1, 2, 1, 2, 2]), (1, [1] * 5)])
def test_grouped_convolutions_lrn_split_and_dropout_nodes(columns, groups):
    net, _ = make(columns=columns)
    nodes = export.onnx_model(net).graph.node
    group = {n.name: a.i for n in nodes for a in n.attribute if a.name == "group"}
    assert [group[f"conv{i}"] for i in range(1, 6)] == groups
    ops = [n.op_type for n in nodes]
    assert ops.count("LRN") == 2 * columns and ops.count("Split") == 2 * (columns - 1)
    assert ops.count("Mul") == 2  # paper dropout, fc6 and fc7
    lrn = next(n for n in nodes if n.op_type == "LRN")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in lrn.attribute}
    assert attrs["size"] == 5 and attrs["bias"] == 2.0 and attrs["beta"] == 0.75
    assert attrs["alpha"] == pytest.approx(0.025 * 5)  # alpha * size


@pytest.mark.parametrize("arch", ["tiny", "demo"])
def test_onnxruntime_float32_gives_refnet_logits(arch):
    net, x = make(arch, "float32")
    assert_outputs_match(net, x, F32)


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, changes", [("alexnet", {}), ("owt", {}), ("owt", {"dropout_mode": "paper"})]
)
def test_onnxruntime_float32_full_size_batch_2(arch, changes):
    """The paper's net, and torchvision's (its names on the initializers, the average
    pooling, dropout before fc6 and fc7)."""
    net, x = make(arch, "float32", **changes)
    assert_outputs_match(net, x[:2], F32)


@pytest.mark.parametrize("arch", ["tiny", "demo"])
def test_reference_evaluator_float64_gives_refnet_logits(arch):
    net, x = make(arch, "float64")
    assert_outputs_match(net, x, F64)


@pytest.mark.parametrize("dtype, bound", [("float64", F64), ("float32", F32)])
def test_every_layer_output_matches_features(dtype, bound):
    net, x = make("tiny", dtype)
    names = export.output_names(net)
    got = run_export(net, x, outputs=names)
    for name in names:
        want = numpy.asarray(net.features(x, upto=name, maps=True))
        assert got[name].shape == want.shape, name
        assert rel(got[name], want) <= bound, name


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_option_variant(variant):
    net, x = make("tiny", "float64", seed=1, **VARIANTS[variant])
    names = export.output_names(net)
    got = run_export(net, x, outputs=names)
    for name in names:
        assert rel(got[name], numpy.asarray(net.features(x, upto=name, maps=True))) <= F64
    assert rel(got["logits"], net.forward(x)) <= F64
    net32, x32 = make("tiny", "float32", seed=1, **VARIANTS[variant])
    assert rel(run_export(net32, x32)["logits"], net32.forward(x32)) <= F32


def test_a_float64_net_exports_as_float32_too():
    net, x = make("tiny", "float64")
    got = run_model(export.onnx_model(net, dtype="float32"), x.astype(numpy.float32))
    assert got["logits"].dtype == numpy.float32
    assert rel(got["logits"], net.forward(x)) <= F32


MUTANTS = {  # where the layer kinds give their ONNX nodes (refnet.nodes)
    "alpha not times size": (
        nodes.lrn,
        "onnx_attributes",
        lambda p: dict(size=p["size"], alpha=p["alpha"], beta=p["beta"], bias=p["k"]),
    ),
    "ONNX's default bias 1, not k": (
        nodes.lrn,
        "onnx_attributes",
        lambda p: dict(size=p["size"], alpha=p["alpha"] * p["size"], beta=p["beta"], bias=1.0),
    ),
    "one LRN over both columns": (nodes.Lrn, "groups", lambda self: 1),
    "no test-time dropout scale": (
        nodes.Dropout,
        "onnx",
        lambda self, g, shape: g.node("Identity", [g.last], self.name),
    ),
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_a_wrong_conversion_fails_the_comparison(mutant, monkeypatch):
    """The comparison can fail: each of these export mistakes moves the logits far past
    both bounds (the correct export is within them, tests above)."""
    net, x = make("tiny", "float64")
    where, name, wrong = MUTANTS[mutant]
    monkeypatch.setattr(where, name, wrong)
    assert rel(run_export(net, x)["logits"], net.forward(x)) > 100 * F32


def test_spec_lrn_is_the_papers_lrn_with_alpha_times_size():
    """The float64 runtime's LRN (onnx's stock one normalises only the first N channels,
    onnx issue #7805) against refnet's plain LRN, with N != C and an even-sized edge."""
    from onnx.reference import ReferenceEvaluator

    from refnet.layers.reference import lrn_forward

    h = onnx.helper
    x = numpy.random.default_rng(3).standard_normal((2, 7, 3, 4))
    for size in (3, 5):
        node = h.make_node("LRN", ["x"], ["y"], size=size, alpha=0.125, beta=0.75, bias=1.5)
        graph = h.make_graph(
            [node],
            "lrn",
            [h.make_tensor_value_info("x", 11, None)],
            [h.make_tensor_value_info("y", 11, None)],
        )
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", export.OPSET)])
        (y,) = ReferenceEvaluator(model, new_ops=[spec_lrn()]).run(None, {"x": x})
        want = lrn_forward(x, size=size, alpha=0.125 / size, beta=0.75, k=1.5)
        assert rel(y, want) <= 1e-14


def test_features_maps_are_nchw_in_both_layouts():
    a, x = make("tiny", "float64", lrn_mode="all")
    b = build_network(a.options.replace(layout="NCHW"))
    b.load_state_dict(a.state_dict())
    for name in ("input", "lrn1", "pool2", "conv3", "conv5"):
        ma, mb = a.features(x, upto=name, maps=True), b.features(x, upto=name, maps=True)
        assert ma.shape == mb.shape and ma.shape[0] == 3 and ma.ndim == 4
        assert rel(ma, mb) <= F64
    numpy.testing.assert_array_equal(a.features(x, upto="input", maps=True), x)
    with pytest.raises(ValueError, match="not \\(N, F\\) features"):
        a.features(x, upto="pool5")


def test_features_maps_of_two_tagged_devices_gather_on_column_0():
    from tests.device_backend import tagged

    a, x = make("tiny", "float64")
    b = build_network(a.options.replace(backend=tagged, devices=(0, 1)))
    b.load_state_dict(a.state_dict())
    with tagged.Device(0):
        xt = tagged.asarray(x)
    for name in ("lrn1", "conv3", "relu5"):
        got = b.features(xt, upto=name, maps=True)
        assert got.device_id == 0
        assert rel(numpy.asarray(got), a.features(x, upto=name, maps=True)) <= F64


def test_to_onnx_writes_atomically_and_refuses_bad_arguments(tmp_path):
    net, x = make("tiny", "float32")
    path = export.to_onnx(net, tmp_path / "net.onnx", outputs="conv2")
    model = onnx.load(str(path))
    assert [o.name for o in model.graph.output] == ["logits", "probabilities", "conv2"]
    assert [p.name for p in tmp_path.iterdir()] == ["net.onnx"]  # no temporary
    assert rel(run_model(model, x)["logits"], net.forward(x)) <= F32
    with pytest.raises(ValueError, match="'conv9'.*choose from"):
        export.to_onnx(net, tmp_path / "bad.onnx", outputs=("conv1", "conv9"))
    with pytest.raises(ValueError, match="float16"):
        export.onnx_model(net, dtype="float16")
    with pytest.raises(RuntimeError, match="parameters are not set"):
        export.onnx_model(build_network(NetOptions(arch="tiny")))
    assert [p.name for p in tmp_path.iterdir()] == ["net.onnx"]


# -- the command line ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with one checkpoint of a tiny net (its init, as training starts)."""
    folder = tmp_path_factory.mktemp("run")
    net = build_network(NetOptions(arch="tiny", **BASE)).init(seed=2, scheme="he")
    tree = {
        "format": checkpoint.FORMAT,
        "arch": "tiny",
        "config": {"arch": "tiny"},
        "network": net.options.to_dict(),
        "model": net.state_dict(),
    }
    checkpoint.save(checkpoint.checkpoint_path(folder, 1), tree)
    return folder, net


def test_the_command_writes_a_model_of_the_checkpoint(run_dir, tmp_path):
    folder, net = run_dir
    out = tmp_path / "tiny.onnx"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "refnet.export",
            "--checkpoint",
            str(folder),
            "--onnx",
            str(out),
            "--outputs",
            "conv1,relu_fc7",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout
    model = onnx.load(str(out))
    x = numpy.random.default_rng(5).standard_normal((2, 3, 45, 45)).astype(numpy.float32)
    got = run_model(model, x)
    assert rel(got["logits"], net.forward(x)) <= F32
    assert rel(got["relu_fc7"], net.features(x, upto="relu_fc7")) <= F32
    assert got["conv1"].shape == (2, 4, 23, 23)


def _error(capsys, argv):
    try:
        status = export.main(argv)
    except SystemExit as e:  # refused while parsing
        status = e.code
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    return err


def test_command_errors_are_one_line_and_exit_2(run_dir, tmp_path, capsys, monkeypatch):
    folder, _ = run_dir
    ckpt = str(checkpoint.checkpoint_path(folder, 1))
    out = str(tmp_path / "a.onnx")
    assert "does not exist" in _error(
        capsys, ["--checkpoint", str(tmp_path / "none.h5"), "--onnx", out]
    )
    assert "holds no checkpoint" in _error(capsys, ["--checkpoint", str(tmp_path), "--onnx", out])
    missing = str(tmp_path / "no" / "a.onnx")
    assert "does not exist" in _error(capsys, ["--checkpoint", ckpt, "--onnx", missing])
    assert "is a directory" in _error(capsys, ["--checkpoint", ckpt, "--onnx", str(tmp_path)])
    assert "'fc9'" in _error(capsys, ["--checkpoint", ckpt, "--onnx", out, "--outputs", "fc9"])
    bad = tmp_path / "ckpt-00000002.h5"
    bad.write_bytes(b"not hdf5")
    assert "unreadable" in _error(capsys, ["--checkpoint", str(bad), "--onnx", out])
    monkeypatch.setitem(sys.modules, "onnx", None)  # onnx not installed
    assert "pip install -e '.[interop]'" in _error(capsys, ["--checkpoint", ckpt, "--onnx", out])
    assert not any(p.suffix == ".onnx" for p in tmp_path.iterdir())


def test_the_verify_part_runs_and_passes(monkeypatch):
    from refnet.verify import against_onnxruntime as part

    assert part.NAME == "onnxruntime" and part.available() is None
    rows = part.run("float32", seed=0, sizes=("small",))
    assert {r.part for r in rows} == {"onnxruntime"} and len(rows) > 200
    assert all(r.status == "PASS" for r in rows), [r for r in rows if r.status != "PASS"]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert part.available() == "onnxruntime not installed (pip install -e '.[interop]')"
