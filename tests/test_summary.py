"""``refnet.summary``: totals equal the network's own counts; alexnet's equal the paper's."""

import subprocess
import sys

import pytest

from refnet.arch import ARCHS
from refnet.network import build_network
from refnet.options import NetOptions
from refnet.summary import layer_table, step_flops


@pytest.mark.parametrize(
    "arch, columns, head",
    [
        (arch, columns, head)
        for arch in sorted(ARCHS)
        for columns in ARCHS[arch].columns
        for head in ("fc", "gap")
    ],
)
def test_totals_equal_the_network_counts(arch, columns, head):
    net = build_network(NetOptions(arch=arch, columns=columns, head=head))
    rows = layer_table(net)
    assert [r.name for r in rows] == [layer.name for layer in net.layers]
    assert sum(r.params for r in rows) == net.num_params()
    assert {r.name: r.params for r in rows if r.params} == net.param_counts()
    assert rows[-1].shape == (net.num_classes,)


def _direct_flops(net):
    """Forward FLOPs from the weights' shapes and ``ArchSpec.sizes`` (the oracle)."""
    sizes = net.spec.sizes(net.pool)
    fwd = sum(
        2 * _prod(net.shapes[net.key(f"conv{i}", "weight")]) * sizes[f"conv{i}"] ** 2
        for i in range(1, 6)
    )
    return fwd + sum(2 * _prod(net.shapes[net.key(n, "weight")]) for n in ("fc6", "fc7", "fc8"))


def _prod(shape):
    out = 1
    for d in shape:
        out *= d
    return out


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("pool", [(3, 2), (2, 2)])
def test_flops_equal_a_direct_count(arch, pool):
    try:
        net = build_network(NetOptions(arch=arch, pool=pool))
    except ValueError:
        pytest.skip(f"{arch} has no {pool} pooling")
    fwd, step = step_flops(net)
    assert fwd == _direct_flops(net)
    conv1 = 2 * _prod(net.shapes[net.key("conv1", "weight")]) * net.spec.sizes(pool)["conv1"] ** 2
    assert step == 3 * fwd - conv1  # dW everywhere, dX but for conv1


def test_alexnet_matches_the_paper():
    net = build_network(NetOptions(arch="alexnet"))
    rows = {r.name: r for r in layer_table(net)}
    assert net.num_params() == sum(r.params for r in rows.values()) == 60_965_224
    fwd, _ = step_flops(net)
    assert fwd == 1_448_813_632  # 0.72 G multiply-adds per image
    assert fwd / 2 == pytest.approx(0.72e9, rel=0.01)
    assert rows["conv1"].shape == (96, 55, 55) and rows["pool5"].shape == (256, 6, 6)
    assert rows["flatten"].shape == (9216,)


def test_bench_counts_with_the_summary():
    from refnet.bench import flops

    net = build_network(NetOptions(arch="demo"))
    assert flops.step_flops(net) == step_flops(net)


def test_cli_prints_every_arch():
    r = subprocess.run(
        [sys.executable, "-m", "refnet.summary"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    for name in ARCHS:
        assert f"arch {name}" in r.stdout
    assert "60,965,224" in r.stdout and "1,448,813,632" in r.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "refnet.summary", "--arch", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
