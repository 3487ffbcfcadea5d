"""``python -m refnet.bench`` at toy size: it runs, writes its JSON, and refuses bad options.

Timings themselves are never asserted (speed is measured by the bench, not by tests);
this only keeps the measurement CLI working, with and without PyTorch's side.
"""
import json

import pytest

from refnet import bench


@pytest.mark.parametrize("extra", [["--no-torch"], ["--conv-algo", "gemm", "--no-torch"],
                                   ["--layers-as", "grouped", "--no-torch"]])
def test_bench_runs_on_the_tiny_net_and_writes_json(tmp_path, extra):
    out = tmp_path / "bench.json"
    bench.main(["--arch", "tiny", "--batch", "2", "--repeats", "1", "--warmup", "0",
                "--parts", "step,forward,layers", "--keep-env", "--json", str(out), *extra])
    r = json.loads(out.read_text())
    assert r["step"]["refnet"]["median_s"] > 0
    names = [row["layer"] for row in r["layers"]]
    assert names[:4] == ["conv1", "relu1", "lrn1", "pool1"] and names[-1] == "softmax"
    assert all(row["refnet_forward"] > 0 for row in r["layers"])


def test_bench_refuses_bad_options(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--batch", "0"])
    assert "--batch and --repeats must be >= 1" in capsys.readouterr().err
