"""NetOptions: every network option validated once, its allowed values defined once."""

import dataclasses

import numpy
import pytest

from refnet import AlexNet, NetOptions, build_network
from refnet.config import build_parser
from refnet.options import CHOICES


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(arch="vgg"), "arch"),
        (dict(columns=3), "columns"),
        (dict(lrn_mode="x"), "lrn_mode"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=float("nan")), "dropout"),
        (dict(dropout_mode="x"), "dropout_mode"),
        (dict(pool=(3,)), "pool"),
        (dict(pool=(3, 0)), "pool"),
        (dict(backend="jax"), "backend"),
        (dict(num_classes=0), "num_classes"),
        (dict(lrn_size=4), "lrn_size"),
        (dict(lrn_k=0.0), "lrn_k"),
        (dict(lrn_alpha=-1.0), "lrn_alpha"),
        (dict(conv_algo="fft"), "conv_algo"),
        (dict(conv_cache="nothing"), "conv_cache"),
        (dict(layout="NHWC"), "layout must be one of .*NHWC"),
        (dict(lrn="yes"), "lrn"),
        (dict(devices=(0,)), "device per column"),
        (dict(devices=(0, -1)), "device per column"),
    ],
)
def test_bad_options_are_refused_by_the_options_and_the_network(kwargs, match):
    kwargs = {"arch": "tiny", **kwargs}
    with pytest.raises(ValueError, match=match):
        NetOptions(**kwargs)
    with pytest.raises(ValueError, match=match):
        AlexNet(**kwargs)


def test_bad_dtype_is_a_type_error():
    with pytest.raises(TypeError, match="dtype"):
        NetOptions(dtype="float16")


def test_values_are_normalised_so_equal_networks_have_equal_options():
    a = NetOptions(arch="demo", dtype="float64", pool=[2, 2], dropout=0, devices=[0, 0])
    b = NetOptions(
        arch="demo", dtype=numpy.dtype("float64"), pool=(2, 2), dropout=0.0, devices=(0, 0)
    )
    assert a == b and a.pool == (2, 2) and a.dtype == "float64"
    assert isinstance(a.dropout, float)


def test_options_are_frozen_and_replace_validates():
    opts = NetOptions(arch="tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.columns = 1
    assert opts.replace(columns=1).columns == 1
    with pytest.raises(ValueError, match="columns"):
        opts.replace(columns=4)


def test_to_dict_round_trips_and_unknown_keys_are_refused():
    opts = NetOptions(
        arch="tiny",
        dtype="float64",
        lrn_mode="all",
        pool=(2, 2),
        dropout_mode="inverted",
        conv_algo="gemm",
        layout="NCHW",
        num_classes=3,
    )
    d = opts.to_dict()
    assert d["pool"] == [2, 2] and d["arch"] == "tiny"
    assert NetOptions.from_dict(d) == opts
    with pytest.raises(ValueError, match="unknown network options.*colour"):
        NetOptions.from_dict({**d, "colour": "red"})


def test_from_config_reads_the_training_configuration():
    cfg = {
        "arch": "tiny",
        "dtype": "float64",
        "device": "cpu",
        "columns": 1,
        "lrn": False,
        "lrn_mode": "column",
        "pool": [2, 2],
        "dropout": 0.25,
        "dropout_mode": "paper",
        "conv_cache": "input",
        "batch": 8,
        "lr": 0.1,
    }
    opts = NetOptions.from_config(cfg, num_classes=4)
    assert (opts.columns, opts.lrn, opts.pool, opts.dropout, opts.num_classes) == (
        1,
        False,
        (2, 2),
        0.25,
        4,
    )
    assert opts.backend == "numpy"


def test_build_network_builds_what_the_options_say():
    opts = NetOptions(arch="tiny", dtype="float64", columns=1, pool=(2, 2), num_classes=3)
    net = build_network(opts)
    assert net.options == opts
    assert (net.columns, net.pool, net.num_classes) == (1, (2, 2), 3)
    assert AlexNet(**opts.kwargs()).options == opts
    with pytest.raises(TypeError, match="NetOptions"):
        build_network({"arch": "tiny"})


def test_the_command_line_takes_its_choices_from_the_options():
    actions = {a.dest: a for a in build_parser()._actions}
    for name in (
        "arch",
        "dtype",
        "columns",
        "lrn_mode",
        "dropout_mode",
        "conv_algo",
        "conv_cache",
        "engine",
    ):
        assert tuple(actions[name].choices) == CHOICES[name], name


def test_conv_cache_keeps_its_old_spelling():
    assert NetOptions(conv_cache="columns").conv_cache == "unfolded"
    assert NetOptions.from_dict({"arch": "tiny", "conv_cache": "columns"}).conv_cache == "unfolded"
    args = build_parser().parse_args(["--conv-cache", "columns"])
    assert args.conv_cache == "unfolded"
