"""layers.workspace: memory handed out again never holds anything still in use.

The rules under test (the module doc): a piece is handed out only while no array made
from an earlier piece over the same memory lives; from the pass after the first, the
same requests come from one planned arena about the size of the pass's peak of live
bytes; whatever a caller keeps stays as it was.
"""

import numpy
import pytest

from refnet.layers import workspace
from refnet.layers.workspace import FRESH, Workspace

MB = 1 << 20


def _request(ws, mbytes, fill):
    """A float64 array of ``mbytes`` MiB from ``ws``, filled with ``fill``."""
    a = ws.empty(numpy, (int(mbytes * MB) // 8,), numpy.float64)
    a.fill(fill)
    return a


def _pass(ws, kept, value):
    """One pass of a fixed program: arrays made, used and dropped in a set order, one
    kept past the pass (returned); ``kept`` (earlier passes' arrays) checked throughout."""
    ws.new_pass()
    a = _request(ws, 8, value)  # lives to the end
    b = _request(ws, 6, value + 1)  # dies at once
    del b
    c = _request(ws, 5, value + 2)  # lives with d
    d = _request(ws, 5, value + 3)
    for k, (arr, v) in kept.items():
        assert (arr == v).all(), f"{k} was overwritten"
        assert not numpy.shares_memory(arr, a) and not numpy.shares_memory(arr, c)
        assert not numpy.shares_memory(arr, d)
    assert not numpy.shares_memory(a, c) and not numpy.shares_memory(c, d)
    del c, d
    e = _request(ws, 2, value + 4)  # from the pool (below PLAN_BYTES)
    f = _request(ws, 10, value + 5)  # fits where b, c and d were
    assert (a == value).all() and (e == value + 4).all()
    assert not numpy.shares_memory(a, f) and not numpy.shares_memory(e, f)
    out = a[::2]  # a view the caller keeps
    return out


def test_fresh_makes_new_arrays(xp):
    a = FRESH.zeros(xp, (3, 4), numpy.float32)
    b = FRESH.copy(xp, a.T)
    assert a.shape == (3, 4) and b.shape == (4, 3) and float(abs(a).sum()) == 0
    assert b.flags.c_contiguous


def test_kept_arrays_are_never_written_and_pieces_never_overlap():
    ws = Workspace()
    kept = {}
    for k in range(6):
        kept[k] = (_pass(ws, kept, float(10 * k)), float(10 * k))
        if k >= 2:
            del kept[k - 2]  # the caller drops an old one
    for _k, (arr, v) in kept.items():
        assert (arr == v).all()


def test_later_passes_come_from_one_arena_of_the_peak_size():
    ws = Workspace()
    sizes = []
    for k in range(5):
        _pass(ws, {}, float(k))  # nothing kept: every piece dies in its pass
        sizes.append(ws.held_bytes)
    # live at most: a (8) + c (5) + d (5) = 18 MiB, or a + f = 18; the 2 MiB piece is the pool's
    assert sizes[0] == 0  # nothing kept before the first plan
    assert sizes[1] == sizes[4] == 18 * MB + 2 * MB


def test_second_pass_reuses_the_same_memory():
    ws = Workspace()
    addresses = []
    for k in range(3):
        ws.new_pass()
        a = _request(ws, 8, k)
        addresses.append(a.ctypes.data)
        del a
    assert addresses[1] == addresses[2]


def test_a_piece_a_caller_still_holds_is_not_planned_over():
    ws = Workspace()
    for k in range(2):
        ws.new_pass()
        a = _request(ws, 8, k)
        del a
    ws.new_pass()
    held = _request(ws, 8, 7.0)  # planned at the arena's offset 0
    ws.new_pass()
    other = _request(ws, 8, 1.0)  # the same plan: must not reuse held's memory
    assert not numpy.shares_memory(held, other)
    assert (held == 7.0).all()


def test_a_plan_never_puts_a_piece_over_an_array_kept_from_an_earlier_pass():
    ws = Workspace()

    def program(keep):
        ws.new_pass()
        a = _request(ws, 8, 1.0)  # dies before b: the plan puts both at 0
        kept = a if keep else None
        del a
        b = _request(ws, 8, 2.0)
        return kept, b

    for _ in range(2):
        program(False)
    held, _ = program(True)  # the caller keeps a, planned at offset 0
    _, b = program(False)  # b's plan: offset 0, where held still lies
    assert not numpy.shares_memory(held, b)
    assert (held == 1.0).all() and (b == 2.0).all()


def test_small_requests_and_other_modules_come_from_xp(monkeypatch):
    ws = Workspace()
    small = ws.empty(numpy, (10,), numpy.float32)
    assert small.flags.owndata  # plain malloc'd NumPy array
    assert ws.held_bytes == 0


def test_zeros_and_copy_fill_reused_memory():
    ws = Workspace()
    for _ in range(3):
        ws.new_pass()
        z = ws.zeros(numpy, (MB,), numpy.float64)  # 8 MiB: planned
        assert not z.any()
        z.fill(5.0)
        src = numpy.arange(2 * MB, dtype=numpy.float32).reshape(1024, 2048)
        c = ws.copy(numpy, src.T)
        assert c.flags.c_contiguous and (c == src.T).all()
        del z, c


def test_clear_lets_memory_go_but_not_from_under_live_arrays():
    ws = Workspace()
    for _ in range(3):
        ws.new_pass()
        a = _request(ws, 8, 3.0)
    ws.clear()
    assert ws.held_bytes == 0 and (a == 3.0).all()


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8", "bool"])
def test_views_have_the_requested_shape_and_dtype(dtype):
    ws = Workspace()
    for _ in range(2):
        ws.new_pass()
        a = ws.empty(numpy, (64, 64, 1024), dtype)  # at least PLAN_BYTES
        assert a.shape == (64, 64, 1024) and a.dtype == numpy.dtype(dtype)
        assert a.flags.c_contiguous and a.flags.writeable
        aligned = a.ctypes.data % workspace.GRAIN == 0
        del a
    assert aligned  # pages
