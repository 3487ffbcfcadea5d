"""Learning-rate schedules: the paper's divide-by-10 on plateau, fixed steps, exact resume."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refnet import ReduceOnPlateau, StepSchedule


def test_plateau_divides_by_ten_when_the_error_stops_improving():
    s = ReduceOnPlateau(lr=0.01, patience=1)
    lrs = [s.step(e) for e in [0.9, 0.8, 0.8, 0.81, 0.7, 0.75, 0.75, 0.6]]
    # 0.8 (bad 1, tolerated), 0.81 (bad 2 > patience: /10), 0.75, 0.75 (bad 2: /10)
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.0001, 0.0001])
    assert s.reductions == 2 and s.best == 0.6


def test_plateau_patience_zero_and_threshold():
    s = ReduceOnPlateau(lr=1.0, factor=0.5, patience=0, threshold=0.05)
    assert s.step(0.5) == 1.0
    assert s.step(0.47) == 0.5  # better, but not by more than the threshold
    assert s.step(0.40) == 0.5  # better by 0.1
    assert s.best == 0.40


def test_plateau_stops_after_max_reductions():
    s = ReduceOnPlateau(lr=0.01, patience=0, max_reductions=3)
    lrs = [s.step(0.5) for _ in range(6)]
    assert lrs == pytest.approx([0.01, 1e-3, 1e-4, 1e-5, 1e-5, 1e-5])
    unlimited = ReduceOnPlateau(lr=1.0, patience=0, max_reductions=None)
    assert [unlimited.step(1.0) for _ in range(5)][-1] == pytest.approx(1e-4)


def test_step_schedule():
    s = StepSchedule(lr=0.01, milestones=(2, 4), factor=0.1)
    assert s.lr == 0.01
    assert [s.step() for _ in range(5)] == pytest.approx([0.01, 1e-3, 1e-3, 1e-4, 1e-4])
    assert s.lr_at(0) == 0.01 and s.lr_at(3) == pytest.approx(1e-3)


def test_both_schedules_count_their_reductions():
    # the early-stop message reads ``schedule.reductions`` whichever schedule runs
    step = StepSchedule(lr=0.01, milestones=(2, 4), factor=0.1)
    counts = [step.reductions]
    for _ in range(5):
        step.step()
        counts.append(step.reductions)
    assert counts == [0, 0, 1, 1, 2, 2]
    plateau = ReduceOnPlateau(lr=0.01, patience=0)
    for error in (0.5, 0.5, 0.5):
        plateau.step(error)
    assert plateau.reductions == 2


@pytest.mark.parametrize(
    "bad",
    [
        dict(lr=0),
        dict(factor=1.0),
        dict(patience=-1),
        dict(patience=1.5),
        dict(max_reductions=-1),
        dict(threshold=-0.1),
    ],
)
def test_plateau_refuses_bad_settings(bad):
    with pytest.raises(ValueError):
        ReduceOnPlateau(**bad)


@pytest.mark.parametrize(
    "bad",
    [
        dict(lr=-1),
        dict(milestones=(3, 2)),
        dict(milestones=(0,)),
        dict(milestones=(2.5,)),
        dict(factor=0),
    ],
)
def test_step_refuses_bad_settings(bad):
    with pytest.raises(ValueError):
        StepSchedule(**bad)


def test_states_are_refused_across_kinds_and_non_finite_errors():
    with pytest.raises(ValueError, match="plateau"):
        ReduceOnPlateau().load_state_dict(StepSchedule().state_dict())
    with pytest.raises(ValueError, match="finite"):
        ReduceOnPlateau().step(float("nan"))


@given(
    errors=st.lists(st.floats(0, 1), min_size=2, max_size=20),
    cut=st.integers(0, 19),
    patience=st.integers(0, 3),
)
def test_plateau_resumes_exactly_from_a_json_state(errors, cut, patience):
    cut = min(cut, len(errors))
    whole = ReduceOnPlateau(lr=0.01, patience=patience)
    want = [whole.step(e) for e in errors]
    first = ReduceOnPlateau(lr=0.01, patience=patience)
    got = [first.step(e) for e in errors[:cut]]
    resumed = ReduceOnPlateau(lr=123.0, patience=7)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    got += [resumed.step(e) for e in errors[cut:]]
    assert got == want
    assert resumed.state_dict() == whole.state_dict()


@given(
    milestones=st.lists(st.integers(1, 30), unique=True, max_size=4).map(sorted),
    cut=st.integers(0, 40),
)
def test_step_resumes_exactly_from_a_json_state(milestones, cut):
    whole = StepSchedule(lr=0.1, milestones=milestones)
    want = [whole.step() for _ in range(40)]
    first = StepSchedule(lr=0.1, milestones=milestones)
    got = [first.step() for _ in range(cut)]
    resumed = StepSchedule(lr=5.0)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert resumed.lr == first.lr
    got += [resumed.step() for _ in range(40 - cut)]
    assert got == want
