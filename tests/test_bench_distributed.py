"""The communication benchmark and the scaling model (bench.allreduce, bench.scaling)."""

import json
import shutil
import subprocess
import sys

import pytest

from refnet.bench import scaling


def test_ring_time_is_the_alpha_beta_formula():
    link = "InfiniBand NDR"
    p, nbytes = 4, 1e9
    want = 2 * 3 * scaling.ALPHA[link] + 2 * 3 / 4 * nbytes / scaling.LINKS[link]
    assert scaling.ring_time(p, nbytes, link) == pytest.approx(want, rel=1e-15)
    assert scaling.ring_time(1, nbytes, link) == 0.0
    assert scaling.ring_link(8) == "NVLink 4 (H100 SXM)" and scaling.ring_link(9) == link


def test_overlap_hides_the_fc_buckets_behind_the_convolutions_backward():
    slow = scaling.step(64, images_per_s=1000.0, overlap=True)  # a long backward
    conv_only = scaling.ring_time(64, (scaling.PARAMS - scaling.FC_PARAMS) * 4, "InfiniBand NDR")
    assert slow["exposed_s"] == pytest.approx(conv_only, rel=1e-12)
    plain = scaling.step(64, images_per_s=1000.0)
    assert plain["exposed_s"] == pytest.approx(
        scaling.ring_time(64, scaling.PARAMS * 4, "InfiniBand NDR"), rel=1e-12
    )
    assert plain["efficiency"] < slow["efficiency"] <= 1.0
    assert plain["images_per_s"] == pytest.approx(64 * 128 / plain["step_s"])


def test_scaling_command_prints_the_table_and_refuses_bad_values(capsys, tmp_path):
    assert scaling.main(["--gpus", "2,8", "--plot", str(tmp_path / "s.png")]) == 0
    out = capsys.readouterr().out
    assert "| 2 | NVLink" in out and "| 8 | NVLink" in out
    assert (tmp_path / "s.png").stat().st_size > 0
    assert scaling.main(["--gpus", "0,x"]) == 2
    assert "--gpus must be positive integers, got '0,x'" in capsys.readouterr().err
    assert scaling.main(["--images-per-s", "0"]) == 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="no mpiexec")
def test_allreduce_bench_measures_two_ranks(tmp_path):
    out = tmp_path / "ar.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "refnet.bench.allreduce",
            "--arch",
            "tiny",
            "--batch",
            "8",
            "--repeats",
            "2",
            "--steps",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["ranks"] == 2 and report["parameters"] > 0
    assert report["algbw_GBps"] > 0 and report["allreduce_s"]["median"] > 0
    for mode in ("fused", "overlap"):
        step = report["step"][mode]
        assert 0 <= step["communication_fraction"] < 1 and step["total_s"] > 0
    assert "allreduce of" in r.stdout and "communication" in r.stdout


# --- bench.traffic: the bytes a rank sends, against a ring simulated step by step ---

ALEXNET_CONV = 2_334_080  # conv1-conv5 with two columns, weights and biases
ALEXNET_PARAMS = 60_965_224
ALEXNET_FEATURES = 9216  # 256 x 6 x 6, fc6's inputs
ALEXNET_FC = (4096, 4096, 1000)  # fc6, fc7, fc8 units


def blocks_of(n, R):
    """Block lengths of n items over R ranks, the first n mod R one longer."""
    base, extra = divmod(n, R)
    return [base + (r < extra) for r in range(R)]


def simulated_chain(sizes, start):
    """A ring in which rank r first sends block start[r], then forwards at every step the
    block it received at the step before: (what each rank sent, the block each rank
    received last)."""
    R = len(sizes)
    sent = [0] * R
    holding = list(start)
    last = [None] * R
    for _step in range(R - 1):
        received = [None] * R
        for r in range(R):
            sent[r] += sizes[holding[r]]
            received[(r + 1) % R] = holding[r]
        holding = last = received
    return sent, last


def simulated_allgather(sizes):
    sent, last = simulated_chain(sizes, range(len(sizes)))
    return sent


def simulated_reduce_scatter(sizes):
    """Each rank must end with its own block summed: it starts with its predecessor's."""
    R = len(sizes)
    sent, last = simulated_chain(sizes, [(r - 1) % R for r in range(R)])
    if R > 1:
        assert last == list(range(R))  # the last block each rank receives is its own
    return sent


def simulated_allreduce(n, R):
    """Reduce-scatter (rank r starts with chunk r), then allgather of the chunk each rank
    completed."""
    sizes = blocks_of(n, R)
    first, completed = simulated_chain(sizes, range(R))
    if R == 1:
        return [0]
    # a rank completes the chunk it received last (adding its own share): it starts the
    # allgather with that chunk
    second, _ = simulated_chain(sizes, completed)
    return [a + b for a, b in zip(first, second, strict=True)]


def hand_hybrid(R, B, width=4):
    """Every part of the hybrid step per rank, for alexnet, by the simulated ring."""
    images = blocks_of(B, R)
    units = [blocks_of(u, R) for u in ALEXNET_FC]
    parts = {
        "fc_grad": [0] * R,
        "conv_grad": [width * e for e in simulated_allreduce(ALEXNET_CONV, R)],
        "labels": [8 * e for e in simulated_allgather(images)],
        "indices": [8 * e for e in simulated_allgather(images)],
        "gather_pool5": [
            width * e for e in simulated_allgather([n * ALEXNET_FEATURES for n in images])
        ],
    }
    for name, u in zip(("fc6", "fc7", "fc8"), units, strict=True):
        parts[f"gather_{name}"] = [width * e for e in simulated_allgather([B * k for k in u])]
    parts["scatter_fc8_dx"] = [
        width * e for e in simulated_reduce_scatter([B * k for k in units[1]])
    ]
    parts["scatter_fc7_dx"] = [
        width * e for e in simulated_reduce_scatter([B * k for k in units[0]])
    ]
    parts["scatter_fc6_dx"] = [
        width * e for e in simulated_reduce_scatter([n * ALEXNET_FEATURES for n in images])
    ]
    return parts


@pytest.mark.parametrize("R, B", [(2, 128), (3, 5)])
def test_hybrid_bytes_match_a_simulated_ring(R, B):
    from refnet.bench import traffic

    got = traffic.bytes_per_step("alexnet", ranks=R, batch=B, scheme="hybrid")
    want = hand_hybrid(R, B)
    assert got["parts"] == want
    totals = [sum(p[r] for p in want.values()) for r in range(R)]
    assert got["total"] == totals and got["max"] == max(totals)
    if R == 3:  # uneven: the ranks differ
        assert len(set(totals)) > 1
    double = traffic.bytes_per_step("alexnet", ranks=R, batch=B, dtype="float64")
    labels = want["labels"][0] + want["indices"][0]
    assert double["total"][0] == 2 * (totals[0] - labels) + labels  # labels stay int64


@pytest.mark.parametrize("R", [2, 4, 8])
def test_data_parallel_bytes_are_the_ring_allreduce_of_every_gradient(R):
    from refnet.bench import traffic

    got = traffic.bytes_per_step("alexnet", ranks=R, batch=128, scheme="data")
    want = 2 * (R - 1) * 4 * ALEXNET_PARAMS // R
    assert 2 * (R - 1) * 4 * ALEXNET_PARAMS % R == 0
    assert got["total"] == [want] * R
    assert got["parts"]["labels"] == [0] * R and got["parts"]["gather_pool5"] == [0] * R
    uneven = traffic.bytes_per_step("alexnet", ranks=3, batch=128, scheme="data")
    fc = ALEXNET_PARAMS - ALEXNET_CONV
    assert uneven["total"] == [
        4 * (a + b)
        for a, b in zip(
            simulated_allreduce(fc, 3), simulated_allreduce(ALEXNET_CONV, 3), strict=True
        )
    ]


def test_hybrid_sends_less_than_data_parallel_and_refuses_bad_values():
    from refnet.bench import traffic

    data = traffic.bytes_per_step("alexnet", ranks=2, batch=128, scheme="data")
    hybrid = traffic.bytes_per_step("alexnet", ranks=2, batch=128, scheme="hybrid")
    assert hybrid["max"] < data["max"] / 10
    assert traffic.bytes_per_step("alexnet", ranks=1, batch=4)["total"] == [0]
    for kwargs, named in (
        ({"scheme": "model"}, "'model'"),
        ({"dtype": "float16"}, "'float16'"),
        ({"ranks": 0}, "ranks must be a positive integer, got 0"),
        ({"batch": 2.5}, "batch must be a positive integer, got 2.5"),
        ({"arch": "vgg"}, "'vgg'"),
    ):
        with pytest.raises(ValueError, match=named):
            traffic.bytes_per_step(**kwargs)


def test_traffic_command_prints_the_table_and_writes_json(capsys, tmp_path):
    from refnet.bench import traffic

    path = tmp_path / "t.json"
    assert traffic.main(["--ranks", "2,3", "--json", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("arch alexnet, global batch 128, float32")
    assert out[3].startswith("| 2 | 243.86 MB | 18.51 MB | 0.0759 | 9.34 MB, ")
    assert out[4].startswith("| 3 | ")
    rows = json.loads(path.read_text())["rows"]
    assert [r["ranks"] for r in rows] == [2, 3]
    assert rows[1]["hybrid"]["parts"] == hand_hybrid(3, 128)
    assert rows[0]["data"]["total"] == [2 * 1 * 4 * ALEXNET_PARAMS // 2] * 2


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--ranks", "0,2"], "'0,2'"),
        (["--ranks", "2,x"], "'2,x'"),
        (["--dtype", "float16"], "'float16'"),
        (["--batch", "0"], "'0'"),
        (["--arch", "vgg"], "'vgg'"),
    ],
)
def test_traffic_command_refuses_bad_flags_in_one_line(capsys, argv, named):
    from refnet.bench import traffic

    with pytest.raises(SystemExit) as e:
        traffic.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and named in err


def test_hybrid_step_is_the_alpha_beta_sum_of_its_exposed_exchanges():
    p, link = 64, "InfiniBand NDR"
    alpha, beta = scaling.ALPHA[link], scaling.LINKS[link]
    even = 2 * ALEXNET_FEATURES + 4 * ALEXNET_FC[0]  # pool5, fc6 and fc7 split evenly
    # the logits: 1000 units in blocks of 16 and 15; the busiest rank's successor has 15
    logits = p * 128 * (ALEXNET_FC[2] - ALEXNET_FC[2] // p)
    activations = 7 * (p - 1) * alpha + 4 * ((p - 1) * 128 * even + logits) / beta
    conv = 2 * (p - 1) * alpha + 2 * (p - 1) / p * 4 * ALEXNET_CONV / beta
    h = scaling.hybrid_step(p, images_per_s=3000.0)
    assert h["activations_s"] == pytest.approx(activations, rel=1e-12)
    assert h["conv_s"] == pytest.approx(conv, rel=1e-12)
    assert h["step_s"] == pytest.approx(128 / 3000 + activations + conv, rel=1e-12)
    assert h["speedup"] == pytest.approx(p * h["efficiency"])
    # few GPUs on a slow link: the hybrid beats the allreduce after backward; 256 GPUs
    # across nodes: it loses to both data-parallel forms (activations grow with p)
    pcie = "PCIe 2.0 x16"
    assert (
        scaling.hybrid_step(8, 500.0, link=pcie)["step_s"]
        < scaling.step(8, 500.0, link=pcie)["step_s"]
    )
    big = scaling.hybrid_step(256, 3000.0)["step_s"]
    assert (
        big
        > scaling.step(256, 3000.0)["step_s"]
        > scaling.step(256, 3000.0, overlap=True)["step_s"]
    )


def test_scaling_command_prints_both_schemes(capsys, tmp_path):
    assert scaling.main(["--gpus", "2,64", "--scheme", "hybrid"]) == 0
    out = capsys.readouterr().out
    assert "AlexNet data parallel" not in out and "| 64 | InfiniBand NDR | " in out
    assert "The hybrid step is no slower" in out
    assert (
        scaling.main(["--gpus", "8", "--link", "PCIe 2.0 x16", "--plot", str(tmp_path / "b.png")])
        == 0
    )
    out = capsys.readouterr().out
    assert "AlexNet data parallel" in out and "AlexNet hybrid" in out
    assert out.count("| 8 | PCIe 2.0 x16 |") == 2
    assert (tmp_path / "b.png").stat().st_size > 0
