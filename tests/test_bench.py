"""``python -m refnet.bench`` at toy size: it runs, writes its JSON, and refuses bad options.

Timings themselves are never asserted (speed is measured by the bench, not by tests);
this only keeps the measurement CLI working, with and without PyTorch's side.
(tests/test_imports.py keeps the library standing without it.)
"""

import argparse
import json

import pytest

from refnet import NetOptions, build_network
from refnet.bench.__main__ import main
from refnet.bench.layers import column_shares, layer_cases
from refnet.bench.memory import peak_memory
from refnet.bench.report import report


@pytest.mark.parametrize(
    "extra",
    [
        ["--no-torch"],
        ["--conv-algo", "gemm", "--no-torch"],
        ["--layers-as", "grouped", "--no-torch"],
    ],
)
def test_bench_runs_on_the_tiny_net_and_writes_json(tmp_path, extra):
    out = tmp_path / "bench.json"
    main(
        [
            "--arch",
            "tiny",
            "--batch",
            "2",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--parts",
            "step,forward,layers",
            "--keep-env",
            "--json",
            str(out),
            *extra,
        ]
    )
    r = json.loads(out.read_text())
    assert r["step"]["refnet"]["median_s"] > 0
    names = [row["layer"] for row in r["layers"]]
    assert names[:4] == ["conv1", "relu1", "lrn1", "pool1"] and names[-1] == "softmax"
    assert all(row["refnet_forward"] > 0 for row in r["layers"])
    # the network's form of our rows states what one hand-off to the column threads costs
    assert ("handoff_s" in r) == ("grouped" not in extra)
    assert r.get("handoff_s", 1) > 0
    assert ("hand-off" in report(r)) == ("handoff_s" in r)
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # no temporary left


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--batch", "0"], "argument --batch: must be >= 1, got '0'"),
        (["--repeats", "-1"], "argument --repeats: must be >= 1, got '-1'"),
        (["--warmup", "-1"], "argument --warmup: must be >= 0, got '-1'"),
        (["--conv-algo", "fft"], "invalid choice: 'fft'"),
        (["--parts", "step,nap"], "unknown --parts ['nap']"),
    ],
)
def test_bench_refuses_bad_options(capsys, argv, words):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and words in err and len(err.splitlines()) == 1, err


def test_memory_probe_runs_python_m_bench_in_a_fresh_process():
    args = argparse.Namespace(
        arch="tiny",
        batch=2,
        dtype="float32",
        device="cpu",
        conv_cache="columns",
        conv_algo="winograd",
    )
    r = peak_memory(args, "refnet")
    assert r is not None and set(r) == {"peak_rss_bytes", "rss_before_steps_bytes", "peak_reset"}


def test_column_shares_match_the_networks_own_shards():
    """The per-layer bench times each column's share as the network holds it: the conv
    and fc weight shapes of the shares are the network's per-column parameter shapes,
    and each conv share reads as many input channels as its weight expects."""
    net = build_network(NetOptions(arch="alexnet"))
    for name, kind, shape, p in layer_cases(net, 4):
        shares = column_shares(net, name, kind, shape, p)
        if kind in ("conv", "linear"):
            assert [tuple(q["w"]) for _, q in shares] == [
                tuple(net.params[c][f"{name}.weight"].shape) for c in range(len(shares))
            ]
        if kind == "conv":
            assert all(s[1] == q["w"][1] for s, q in shares)
        if name in ("fc8", "softmax"):
            assert len(shares) == 1
        else:
            assert len(shares) == net.columns


def test_layer_cases_follow_the_networks_options():
    net = build_network(
        NetOptions(arch="tiny", lrn=False, columns=1, pool=(2, 2), conv_algo="gemm")
    )
    cases = layer_cases(net, 2)
    assert not [c for c in cases if c[1] == "lrn"]
    assert {c[3]["algo"] for c in cases if c[1] == "conv"} == {"gemm"}
    assert all(c[3] == dict(size=2, stride=2) for c in cases if c[1] == "pool")
    assert all(len(column_shares(net, *c)) == 1 for c in cases)


def test_process_settings_set_exactly_their_malloc_variables():
    from refnet.bench.env import MALLOC_ENV, process_env

    start = {"PATH": "/bin", "MALLOC_ARENA_MAX": "4", "MALLOC_TRIM_THRESHOLD_": "1"}
    assert process_env(start, "tuned") == {"PATH": "/bin", **MALLOC_ENV}
    assert process_env(start, "plain") == {"PATH": "/bin"}
    thresholds = process_env(start, "thresholds")
    assert "MALLOC_ARENA_MAX" not in thresholds
    assert thresholds["MALLOC_MMAP_THRESHOLD_"] == MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"]


def test_winograd_products_count():
    """Counted direct, the products are ``refnet.summary``'s step count (its own code);
    with Winograd's tiles they are fewer, by at most the best tile's ratio m^2 r^2 / n^2."""
    from refnet.bench.flops import step_flops, winograd_step_flops
    from refnet.network import AlexNet

    for arch in ("alexnet", "demo", "tiny"):
        direct = step_flops(AlexNet(arch=arch))[1]
        assert winograd_step_flops(arch, winograd=False) == direct
        fewer = direct / winograd_step_flops(arch)
        assert 1.5 < fewer < 5 * 5 * 4 * 4 / 8**2, (arch, fewer)
