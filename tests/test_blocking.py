"""Cache blocking: the blocks cover their axes exactly once, in order, within the budget."""

import numpy
from hypothesis import given
from hypothesis import strategies as st

from refnet.layers import blocking


def covered(slices, count):
    """The indices of ``range(count)`` the slices select, in order."""
    return [i for s in slices for i in range(count)[s]]


@given(
    count=st.integers(1, 60),
    item=st.integers(0, 50),
    budget=st.one_of(st.none(), st.integers(1, 2000)),
    balanced=st.booleans(),
)
def test_runs_cover_the_range_once_in_order_within_the_budget(count, item, budget, balanced):
    runs = blocking.runs(count, item, budget, balanced=balanced)
    assert covered(runs, count) == list(range(count))
    lengths = [len(range(count)[s]) for s in runs]
    assert min(lengths) >= 1
    if budget is None:
        assert len(runs) == 1
    elif not balanced:
        # as many items as fit, at least one: only the last run is shorter
        assert all(n == max(1, budget // max(1, item)) for n in lengths[:-1])
    else:
        # at most ceil(total / budget) runs, of equal length but the last, each within
        # one item of the budget
        item = max(1, item)
        assert len(runs) <= min(count, -(-count * item // budget))
        assert all(n == lengths[0] for n in lengths[:-1]) and lengths[-1] <= lengths[0]
        assert lengths[0] == 1 or lengths[0] * item < budget + item


@given(
    outer=st.integers(1, 6),
    inner=st.integers(1, 9),
    inner_bytes=st.integers(1, 40),
    budget=st.one_of(st.none(), st.integers(1, 1000)),
    balanced=st.booleans(),
)
def test_nested_runs_cover_the_grid_once(outer, inner, inner_bytes, budget, balanced):
    grid = numpy.zeros((outer, inner), dtype=int)
    blocks = blocking.nested_runs(outer, inner, inner_bytes, budget, balanced=balanced)
    for o, i in blocks:
        grid[o, i] += 1
    assert (grid == 1).all()
    whole = inner * inner_bytes
    for o, i in blocks:
        rows, cols = len(range(outer)[o]), len(range(inner)[i])
        if budget is not None and whole <= budget:
            assert cols == inner and rows * whole <= budget  # whole outer items
        elif budget is not None:
            assert rows == 1  # inside one outer item


def test_budgets():
    assert blocking.block_bytes(numpy) == blocking.CPU_BLOCK_BYTES
    assert blocking.block_bytes(object()) is None  # no limit off the CPU
    assert blocking.copy_block_bytes(numpy, 10**9) == blocking.CPU_BLOCK_BYTES
    assert blocking.copy_block_bytes(object(), 7) == 4  # half, rounded up
