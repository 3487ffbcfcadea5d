"""Weights as safetensors: a round trip, the options in the metadata, PyTorch reads them."""

import json

import numpy
import pytest

from refnet import NetOptions, build_network
from refnet.weights import (
    OPTIONS_KEY,
    load_safetensors,
    match_options,
    read_safetensors,
    save_safetensors,
)

safetensors = pytest.importorskip("safetensors")


def test_round_trip_keeps_parameters_and_options(tmp_path):
    opts = NetOptions(arch="tiny", dtype="float64", lrn_mode="all", pool=(2, 2), num_classes=3)
    net = build_network(opts).init(seed=4, scheme="he")
    path = save_safetensors(net, tmp_path / "w.safetensors")
    back = load_safetensors(path)
    assert back.options == opts
    for name, value in net.state_dict().items():
        assert value.dtype == back.state_dict()[name].dtype
        numpy.testing.assert_array_equal(value, back.state_dict()[name])
    x = numpy.random.default_rng(0).standard_normal((2, 3, 45, 45))
    numpy.testing.assert_array_equal(net.forward(x), back.forward(x))
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary


def test_pytorch_loads_the_file_into_the_twin(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from refnet.verify.network import twin_of

    opts = NetOptions(arch="tiny", dtype="float64")
    net = build_network(opts).init(seed=1, scheme="he")
    save_safetensors(net, tmp_path / "w.safetensors")
    state = {k: v.numpy() for k, v in load_file(str(tmp_path / "w.safetensors")).items()}
    twin = twin_of(opts, state)
    x = numpy.random.default_rng(2).standard_normal((2, 3, 45, 45))
    with torch.no_grad():
        logits = twin(torch.from_numpy(x)).numpy()
    numpy.testing.assert_allclose(logits, net.forward(x), rtol=1e-12, atol=1e-14)


def test_a_file_without_options_loads_into_the_arch_it_matches_or_needs_them(tmp_path):
    from safetensors.numpy import save_file

    net = build_network(NetOptions(arch="tiny", dtype="float32", num_classes=7)).init(seed=0)
    save_file(net.state_dict(), str(tmp_path / "plain.safetensors"))
    tensors, stored = read_safetensors(tmp_path / "plain.safetensors")
    assert stored is None and set(tensors) == set(net.shapes)
    matched = load_safetensors(tmp_path / "plain.safetensors")  # names and shapes: tiny
    assert (matched.options.arch, matched.columns, matched.num_classes) == ("tiny", 2, 7)
    one = build_network(NetOptions(arch="tiny", columns=1)).init(seed=0)
    assert match_options(one.state_dict()) == NetOptions(arch="tiny", columns=1, num_classes=5)
    del tensors["conv1.bias"]
    save_file(tensors, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ValueError, match="holds no refnet options and no arch"):
        load_safetensors(tmp_path / "partial.safetensors")
    loaded = load_safetensors(tmp_path / "plain.safetensors", options=net.options)
    numpy.testing.assert_array_equal(loaded.state_dict()["fc8.bias"], net.state_dict()["fc8.bias"])
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        read_safetensors(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="state_dict"):  # wrong arch for the weights
        load_safetensors(
            tmp_path / "plain.safetensors", options=NetOptions(arch="tiny", num_classes=3)
        )


def test_the_metadata_holds_the_options_as_json(tmp_path):
    from safetensors import safe_open

    net = build_network(NetOptions(arch="tiny")).init(seed=0)
    save_safetensors(net, tmp_path / "w.safetensors")
    with safe_open(str(tmp_path / "w.safetensors"), framework="numpy") as f:
        meta = f.metadata()
    assert meta["format"] == "pt"
    assert json.loads(meta[OPTIONS_KEY]) == net.options.to_dict()
