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
