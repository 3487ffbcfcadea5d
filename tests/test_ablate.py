"""``refnet.ablate``: the statistics against hand-computed values, the summary written from
fake finished runs, the run decisions (skip, resume, start), the flags, and one real
end-to-end run on the ``tiny`` arch that a second invocation does not repeat."""

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from refnet import ablate
from refnet.data.cli import run_command
from tests.train_data import make_tiny_set

# Student t 0.975 quantiles from the printed tables (3 decimals)
T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    9: 2.262,
    10: 2.228,
    20: 2.086,
    30: 2.042,
}


@pytest.mark.parametrize("df", sorted(T975))
def test_t_quantile_matches_the_table(df):
    assert ablate.t_quantile(0.975, df) == pytest.approx(T975[df], abs=6e-4)


def test_t_quantile_other_levels_and_the_normal_limit():
    assert ablate.t_quantile(0.95, 1) == pytest.approx(6.314, abs=6e-4)
    assert ablate.t_quantile(0.995, 5) == pytest.approx(4.032, abs=6e-4)
    assert ablate.t_quantile(0.975, 10**6) == pytest.approx(1.95996, abs=1e-4)
    assert ablate.t_quantile(0.5, 3) == pytest.approx(0.0, abs=1e-9)
    # df = 1 is the Cauchy distribution: F(t) = 1/2 + atan(t)/pi
    assert ablate.t_cdf(2.5, 1) == pytest.approx(0.5 + math.atan(2.5) / math.pi, rel=1e-12)
    assert ablate.t_cdf(-2.5, 1) == pytest.approx(0.5 - math.atan(2.5) / math.pi, rel=1e-12)
    with pytest.raises(ValueError):
        ablate.t_quantile(0.3, 2)


def test_paired_difference_by_hand():
    # d = (2, 3, 4): mean 3, sd 1, half width t_{0.975,2} / sqrt(3) = 4.3027 / 1.7321
    d = ablate.paired_difference([3.0, 5.0, 7.0], [1.0, 2.0, 3.0])
    assert d["n"] == 3 and d["mean"] == pytest.approx(3.0) and d["sd"] == pytest.approx(1.0)
    assert d["low"] == pytest.approx(3.0 - 2.48414, abs=1e-4)
    assert d["high"] == pytest.approx(3.0 + 2.48414, abs=1e-4)
    assert ablate.verdict(d) == "higher error (+3.0 points)"
    noisy = ablate.paired_difference([1.0, 3.0], [2.0, 2.0])  # d = (-1, 1)
    assert noisy["mean"] == 0.0 and noisy["low"] < 0 < noisy["high"]
    assert ablate.verdict(noisy) == ablate.NOISE
    one = ablate.paired_difference([5.0], [4.0])
    assert one["mean"] == 1.0 and one["low"] is None
    assert ablate.verdict(one) == "one seed: no interval"


def _fake_run(folder, top1_by_epoch, top5=0.05, loss=0.3):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [{"kind": "interval", "step": 1, "epoch": 1, "loss": 9.0}]
    for e, top1 in enumerate(top1_by_epoch, start=1):
        lines.append(
            {
                "kind": "epoch",
                "epoch": e,
                "step": 10 * e,
                "train_loss": loss + e,
                "val_top1_error": top1,
                "val_top5_error": top5,
            }
        )
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_summary_written_from_finished_runs(tmp_path, capsys):
    runs = tmp_path / "out" / "runs"
    for s, (p, v) in enumerate([(0.20, 0.25), (0.30, 0.33)]):  # d = 5, 3 points
        _fake_run(runs / f"paper-s{s}", [0.6, 0.35, p], top5=0.02)
        _fake_run(runs / f"no-lrn-s{s}", [0.7, 0.5, v], top5=0.02 + 0.01 * s)
    status = ablate.main(
        ["--seeds", "2", "--epochs", "3", "--variants", "no-lrn", "--out", str(tmp_path / "out")]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert printed.count("skipped, finished") == 4 and "training" not in printed
    summary = json.loads((tmp_path / "out" / "ablations.json").read_text())
    # target: median of the paper finals (20, 30) + 10 = 35 points
    assert summary["target_top1_error"] == pytest.approx(35.0)
    by = {(r["variant"], r["seed"]): r for r in summary["runs"]}
    assert by["paper", 0]["top1_error"] == pytest.approx(20.0)
    assert by["paper", 0]["train_loss"] == pytest.approx(3.3)
    assert by["paper", 0]["epochs_to_target"] == 2
    assert by["no-lrn", 0]["epochs_to_target"] == 3
    paper, lrn = summary["variants"]["paper"], summary["variants"]["no-lrn"]
    assert paper["top1_error"]["mean"] == pytest.approx(25.0)
    assert paper["top1_error"]["sd"] == pytest.approx(math.sqrt(50))
    d = lrn["difference"]["top1"]
    # d = (5, 3): mean 4, sd sqrt(2), half width 12.706 * sqrt(2) / sqrt(2) = 12.706
    assert d["mean"] == pytest.approx(4.0) and d["sd"] == pytest.approx(math.sqrt(2))
    assert d["high"] - d["mean"] == pytest.approx(12.7062, abs=1e-3)
    assert lrn["verdict_top1"] == ablate.NOISE and ablate.NOISE in printed
    assert lrn["difference"]["top5"]["mean"] == pytest.approx(0.5)
    assert lrn["paper"]["top1"] == 1.4 and lrn["paper"]["text"]["top5"] == "+1.2"
    assert (tmp_path / "out" / "ablations.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class FakeChild:
    """Stands for the ``refnet.train`` subprocess: records the command and finishes the
    run's log (or returns ``status`` without writing)."""

    commands = []

    def __init__(self, cmd, status=0, **popen_options):
        FakeChild.commands.append(cmd)
        self.cmd, self.status = cmd, status

    def wait(self, timeout=None):
        if self.status == 0:
            out = self.cmd[self.cmd.index("--out") + 1]
            _fake_run(Path(out), [0.5, 0.4])
        return self.status


def test_unfinished_runs_resume_and_fresh_ones_start_clean(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    _fake_run(runs / "paper-s0", [0.5])  # unfinished, checkpoint
    (runs / "paper-s0" / "ckpt-00000010.h5").write_bytes(b"")
    _fake_run(runs / "no-lrn-s0", [0.5])  # killed before a checkpoint
    FakeChild.commands = []
    monkeypatch.setattr(ablate.subprocess, "Popen", FakeChild)
    assert (
        ablate.main(
            ["--seeds", "1", "--epochs", "2", "--variants", "no-lrn", "--out", str(tmp_path)],
            say=lambda *a, **k: None,
        )
        == 0
    )
    paper, lrn = FakeChild.commands
    assert paper[-1] == "--resume" and "--resume" not in lrn and "--no-lrn" in lrn
    assert paper[paper.index("--epochs") + 1] == "2"
    assert paper[paper.index("--seed") + 1] == "0"


def test_an_interrupted_child_ends_with_130(tmp_path, monkeypatch):
    monkeypatch.setattr(ablate.subprocess, "Popen", lambda cmd, **kw: FakeChild(cmd, status=130))
    previous = signal.getsignal(signal.SIGINT)  # run_command installs its own
    try:
        status = run_command(
            lambda: ablate.main(["--seeds", "1", "--out", str(tmp_path)], say=lambda *a, **k: None),
            "refnet.ablate",
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert status == 130 and not (tmp_path / "ablations.json").exists()


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--seeds", "0"], "--seeds"),
        (["--target", "101"], "--target"),
        (["--variants", "no-bias"], "--variants"),
        (["--epochs", "x"], "--epochs"),
        (["--data", "/nonexistent/dir"], "--data"),
        ([], "--out"),
    ],
)
def test_bad_flags_are_one_line_and_status_2(tmp_path, capsys, flags, words):
    out = [] if not flags else ["--out", str(tmp_path)]
    with pytest.raises(SystemExit) as e:
        ablate.main(flags + out)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


def test_out_naming_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit) as e:
        ablate.main(["--out", str(tmp_path / "f")])
    assert e.value.code == 2 and "is a file" in capsys.readouterr().err


def test_help_lists_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        ablate.main(["--help"])
    text = capsys.readouterr().out
    assert "exit status:" in text and "130" in text and "no-lighting" in text


@pytest.mark.slow
def test_end_to_end_tiny_then_nothing_repeated(tmp_path):
    data = make_tiny_set(tmp_path, per_class=(6, 2))
    out = tmp_path / "abl"
    cmd = [
        sys.executable,
        "-m",
        "refnet.ablate",
        "--data",
        str(data),
        "--arch",
        "tiny",
        "--device",
        "cpu",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--variants",
        "no-lrn",
        "pool-2-2",
        "--out",
        str(out),
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count(": training") == 6
    summary = json.loads((out / "ablations.json").read_text())
    assert {(r["variant"], r["seed"]) for r in summary["runs"]} == {
        (v, s) for v in ("paper", "no-lrn", "pool-2-2") for s in (0, 1)
    }
    assert all(r["epochs"] == 1 for r in summary["runs"])
    assert summary["variants"]["no-lrn"]["difference"]["top1"]["n"] == 2
    logs = sorted(out.glob("runs/*/log.jsonl"))
    stamps = [p.stat().st_mtime_ns for p in logs]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("skipped, finished") == 6 and ": training" not in again.stdout
    assert [p.stat().st_mtime_ns for p in logs] == stamps
