"""AlexNet's public surface: architectures, parameter counts, state_dict, init, switches.

Equivalence with the grouped single-device form is in test_network_equivalence.py,
finite differences in test_network_gradcheck.py, placement in test_network_devices.py.
"""

import math

import numpy
import pytest

from refnet import ARCHS, AlexNet, param_shapes
from refnet import init as init_schemes

PAPER_COUNTS = {
    "conv1": 34_944,
    "conv2": 307_456,
    "conv3": 885_120,
    "conv4": 663_936,
    "conv5": 442_624,
    "fc6": 37_752_832,
    "fc7": 16_781_312,
    "fc8": 4_097_000,
}


# -- architectures and counts ----------------------------------------------------------
def test_alexnet_has_the_papers_parameter_count_per_layer():
    shapes = param_shapes("alexnet")
    counts = {}
    for name, shape in shapes.items():
        layer = name.split(".")[0]
        counts[layer] = counts.get(layer, 0) + math.prod(shape)
    assert counts == PAPER_COUNTS
    assert sum(counts.values()) == 60_965_224
    assert shapes["conv2.weight"] == (256, 48, 5, 5)
    assert shapes["conv4.weight"] == (384, 192, 3, 3)
    assert shapes["fc6.weight"] == (4096, 9216)


def test_net_counts_and_names_match_the_table():
    net = AlexNet("demo").init(seed=0)
    assert net.num_params() == sum(math.prod(s) for s in param_shapes("demo").values())
    assert list(net.state_dict()) == list(param_shapes("demo"))
    assert sum(net.param_counts().values()) == net.num_params()


def test_architecture_sizes():
    assert ARCHS["alexnet"].sizes() == {
        "conv1": 55,
        "pool1": 27,
        "conv2": 27,
        "pool2": 13,
        "conv3": 13,
        "conv4": 13,
        "conv5": 13,
        "pool5": 6,
    }
    assert ARCHS["demo"].sizes()["conv1"] == 33 and ARCHS["demo"].sizes()["pool5"] == 3
    assert (ARCHS["alexnet"].store_size, ARCHS["alexnet"].crop_size) == (256, 227)
    assert (ARCHS["demo"].store_size, ARCHS["demo"].crop_size) == (80, 71)
    assert ARCHS["tiny"].sizes()["pool5"] == 2  # fc6 flattening order is exercised


def test_one_column_has_no_grouping_and_same_widths():
    shapes = param_shapes("alexnet", columns=1)
    assert shapes["conv2.weight"] == (256, 96, 5, 5)
    assert shapes["conv5.weight"] == (256, 384, 3, 3)
    assert shapes["fc6.weight"] == (4096, 9216)


def test_switches_change_shapes_where_they_should():
    assert param_shapes("demo", pool=(2, 2))["fc6.weight"] == (512, 64 * 4 * 4)
    assert param_shapes("demo", num_classes=7)["fc8.bias"] == (7,)
    assert AlexNet("tiny", num_classes=3).num_classes == 3


# -- state_dict ------------------------------------------------------------------------
def test_state_dict_round_trip_gives_the_same_outputs():
    rng = numpy.random.default_rng(0)
    a = AlexNet("tiny", "float64").init(seed=3, scheme="he")
    sd = a.state_dict()
    b = AlexNet("tiny", "float64")
    b.load_state_dict(sd)
    for name, value in b.state_dict().items():
        numpy.testing.assert_array_equal(value, sd[name])
    x = rng.standard_normal((2, 3, 45, 45))
    numpy.testing.assert_array_equal(a.forward(x), b.forward(x))


def test_state_dict_is_a_copy_and_load_copies():
    net = AlexNet("tiny", "float64").init(seed=1)
    sd = net.state_dict()
    sd["fc8.weight"][...] = 5.0  # fc8 lives whole on column 0
    sd["conv1.weight"][...] = 5.0
    assert not numpy.any(net.state_dict()["fc8.weight"] == 5.0)
    net.load_state_dict(sd)
    sd["fc8.weight"][...] = 7.0
    assert numpy.all(net.state_dict()["fc8.weight"] == 5.0)


def test_state_dict_is_json_free_numpy_and_cast_to_net_dtype():
    net = AlexNet("tiny", "float32").init(seed=1)
    sd = net.state_dict()
    assert all(type(v) is numpy.ndarray and v.dtype == numpy.float32 for v in sd.values())
    net.load_state_dict({k: v.astype(numpy.float64) for k, v in sd.items()})
    assert all(v.dtype == numpy.float32 for v in net.state_dict().values())


def test_bad_state_dicts_are_refused_naming_the_problem():
    net = AlexNet("tiny").init(seed=0)
    sd = net.state_dict()
    missing = dict(sd)
    del missing["conv3.bias"]
    with pytest.raises(ValueError, match="conv3.bias"):
        net.load_state_dict(missing)
    with pytest.raises(ValueError, match="features.0.weight"):
        net.load_state_dict({**sd, "features.0.weight": sd["conv1.weight"]})
    with pytest.raises(ValueError, match=r"fc6.weight.*\(16, 33\)"):
        net.load_state_dict({**sd, "fc6.weight": numpy.zeros((16, 33))})
    with pytest.raises(ValueError, match="non-finite"):
        net.load_state_dict({**sd, "fc7.bias": numpy.full(16, numpy.nan)})
    with pytest.raises(TypeError):
        net.load_state_dict([1, 2])
    # A two-column state does not load into the one-column net (conv2 is twice as wide).
    with pytest.raises(ValueError, match="conv2.weight"):
        AlexNet("tiny", columns=1).load_state_dict(sd)


def test_a_net_without_parameters_refuses_to_run_until_they_are_set():
    """Parameters are zeros until init or load_state_dict: every use of them raises
    instead of silently computing with zeros; a refused load_state_dict sets nothing."""
    net = AlexNet("tiny", "float64")
    s = net.spec.input_size
    x, labels = numpy.zeros((2, 3, s, s)), numpy.array([0, 1])
    uses = [
        lambda: net.forward(x),
        lambda: net.predict_proba(x),
        lambda: net.loss_and_grad(x, labels, train=False),
        lambda: net.loss_and_grad_columns(x, labels, train=False),
        net.state_dict,
    ]
    sd = AlexNet("tiny", "float64").init(seed=1).state_dict()
    with pytest.raises(ValueError):
        net.load_state_dict({**sd, "fc7.bias": numpy.full(16, numpy.nan)})
    for use in uses:
        with pytest.raises(RuntimeError, match=r"parameters are not set; call net\.init"):
            use()
    net.load_state_dict(sd)
    for use in uses:
        use()
    assert numpy.isfinite(AlexNet("tiny", "float64").init(seed=1).forward(x)).all()


def test_column_shards_are_row_blocks_of_the_grouped_arrays():
    net = AlexNet("tiny", "float64").init(seed=4)
    sd = net.state_dict()
    p0, p1 = net.params
    numpy.testing.assert_array_equal(p0["conv2.weight"], sd["conv2.weight"][:4])
    numpy.testing.assert_array_equal(p1["conv2.weight"], sd["conv2.weight"][4:])
    numpy.testing.assert_array_equal(p1["fc6.bias"], sd["fc6.bias"][8:])
    assert "fc8.weight" in p0 and "fc8.weight" not in p1


# -- init --------------------------------------------------------------------------------
def test_init_is_seeded_and_matches_the_host_draw():
    net = AlexNet("demo", "float64").init(seed=11, scheme="paper")
    want = init_schemes.initial_params(net.shapes, seed=11, scheme="paper", dtype=numpy.float64)
    for name, value in net.state_dict().items():
        numpy.testing.assert_array_equal(value, want[name])
    other = AlexNet("demo", "float64").init(seed=12).state_dict()
    assert not numpy.array_equal(other["conv1.weight"], want["conv1.weight"])
    f32 = AlexNet("demo", "float32").init(seed=11).state_dict()
    numpy.testing.assert_array_equal(f32["fc6.weight"], want["fc6.weight"].astype(numpy.float32))


@pytest.mark.parametrize("scheme", ["paper", "caffe", "he"])
def test_init_statistics_per_layer(scheme):
    """Each weight tensor's mean and std are within 5 standard errors of the scheme's;
    biases are the scheme's constants exactly."""
    shapes = param_shapes("alexnet")
    params = init_schemes.initial_params(shapes, seed=0, scheme=scheme)
    ones = {"paper": 1.0, "caffe": 0.1, "he": 0.0}[scheme]
    for name, value in params.items():
        layer = name.split(".")[0]
        assert value.dtype == numpy.float32
        if name.endswith(".bias"):
            expected = ones if layer in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
            assert numpy.all(value == numpy.float32(expected)), name
            continue
        n = value.size
        if scheme == "paper" or (scheme == "caffe" and layer not in ("fc6", "fc7")):
            std = 0.01
        elif scheme == "caffe":
            std = 0.005
        else:
            std = math.sqrt(2.0 / math.prod(shapes[name][1:]))
        v = value.astype(numpy.float64)
        assert abs(v.mean()) < 5 * std / math.sqrt(n), name
        assert abs(v.std() - std) < 5 * std / math.sqrt(2 * n), name


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="scheme"):
        AlexNet("tiny").init(seed=0, scheme="xavier")


# -- forward, eval helpers, inputs -------------------------------------------------------
def test_rng_masks_equal_explicit_masks_and_do_not_depend_on_columns():
    """Dropout draws one full (N, width) keep-mask per layer from rng, fc6 then fc7:
    the same draws as explicit masks, whatever the number of columns."""
    rng = numpy.random.default_rng(2)
    x = rng.standard_normal((3, 3, 45, 45))
    net = AlexNet("tiny", "float64").init(seed=0, scheme="he")
    got = net.forward(x, train=True, rng=numpy.random.default_rng(9))
    draw = numpy.random.default_rng(9)
    masks = {"fc6": draw.random((3, 16)) >= 0.5, "fc7": draw.random((3, 16)) >= 0.5}
    numpy.testing.assert_array_equal(got, net.forward(x, train=True, masks=masks))
    assert not numpy.allclose(got, net.forward(x, train=False))
    with pytest.raises(ValueError, match="masks"):
        net.forward(x, train=True, masks={"fc6": masks["fc6"][:2], "fc7": masks["fc7"]})


def test_eval_forward_is_deterministic_and_predict_proba_is_softmax():
    rng = numpy.random.default_rng(2)
    x = rng.standard_normal((4, 3, 45, 45)).astype(numpy.float32)
    net = AlexNet("tiny").init(seed=0, scheme="he")
    logits = net.forward(x)
    assert logits.dtype == numpy.float32 and logits.shape == (4, 5)
    numpy.testing.assert_array_equal(logits, net.forward(x))
    p = net.predict_proba(x)
    z = logits.astype(numpy.float64)
    want = numpy.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    numpy.testing.assert_allclose(p, want, rtol=1e-5, atol=1e-7)


def test_loss_and_grad_float32_keeps_float32():
    rng = numpy.random.default_rng(2)
    x = rng.standard_normal((2, 3, 45, 45)).astype(numpy.float32)
    net = AlexNet("tiny").init(seed=0, scheme="he")
    loss, grads = net.loss_and_grad(x, numpy.array([1, 4]), rng=rng)
    assert isinstance(loss, float) and numpy.isfinite(loss)
    assert all(g.dtype == numpy.float32 for g in grads.values())
    assert {k: g.shape for k, g in grads.items()} == net.shapes


def test_bad_inputs_are_refused():
    net = AlexNet("tiny").init(seed=0)
    x = numpy.zeros((2, 3, 45, 45), numpy.float32)
    with pytest.raises(ValueError, match=r"\(N, 3, 45, 45\)"):
        net.forward(numpy.zeros((2, 3, 44, 44), numpy.float32))
    with pytest.raises(TypeError, match="dtype"):
        net.forward(x.astype(numpy.float64))
    with pytest.raises(ValueError, match="labels"):
        net.loss_and_grad(x, numpy.array([0, 5]))
    with pytest.raises(ValueError, match="labels"):
        net.loss_and_grad(x, numpy.array([0]))
    with pytest.raises(TypeError, match="labels"):
        net.loss_and_grad(x, numpy.array([0.0, 1.0]))


# -- the global-average-pooling head -------------------------------------------------------
def test_gap_head_parameter_count():
    """head="gap": AlexNet's five convolutions plus a 1x1 convolution from conv5's 256
    maps to the 1000 classes; no fc layers."""
    convs = 34_944 + 307_456 + 885_120 + 663_936 + 442_624  # PAPER_COUNTS, 2,334,080
    head = 1000 * 256 * 1 * 1 + 1000  # 257,000
    net = AlexNet("alexnet", head="gap")
    assert net.param_counts() == {
        **{k: v for k, v in PAPER_COUNTS.items() if k.startswith("conv")},
        "head": head,
    }
    assert net.num_params() == convs + head == 2_591_080
    assert net.shapes["head.weight"] == (1000, 256, 1, 1)
    assert list(net.shapes)[-2:] == ["head.weight", "head.bias"]
    assert net.placement.rows["head.weight"] == [(0, 0, 1000)]  # whole, on column 0
    assert AlexNet("alexnet", head="gap", num_classes=10).shapes["head.bias"] == (10,)


def test_gap_head_reads_conv5_unpooled():
    names = [layer.name for layer in AlexNet("tiny", head="gap").layers]
    assert names[-5:] == ["conv5", "relu5", "to_head", "head", "gap"]
    assert "pool5" not in names and "fc6" not in names
    with pytest.raises(ValueError, match="head must be one of"):
        AlexNet("tiny", head="avg")
