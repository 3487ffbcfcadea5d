"""Convolution by blocks of output positions (``layers.conv_blocks``) against
``layers.reference``: every layout, stride and padding, blocks of whole rows and of runs
within a row, bands of rows computed in any order, dy given whole or in pieces."""

import numpy
import pytest

from refnet.layers import blocking, conv_blocks, reference, workspace
from refnet.layers.layout import LAYOUTS, transpose
from tests.test_workspace_layers import Poisoned
from tests.tolerance import tol

CASES = [  # x shape (N, C, H, W), w shape (K, C, kh, kw), stride, pad
    ((3, 3, 23, 19), (8, 3, 11, 11), 4, 0),  # conv1-like: 11x11 / 4
    ((2, 3, 17, 17), (6, 3, 5, 5), 3, 1),
    ((4, 5, 9, 7), (4, 5, 3, 3), 1, 2),
]


def _draw(xs, ws, seed, dtype="float64"):
    rng = numpy.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in (xs, ws, ws[:1])]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("xs, ws, stride, pad", CASES)
@pytest.mark.parametrize("budget", [None, 1 << 10, 1 << 16])  # None: the default
@pytest.mark.parametrize("parts, pieces", [(1, 1), (2, 2), (3, 1)])
def test_matches_reference(monkeypatch, layout, xs, ws, stride, pad, budget, parts, pieces):
    if budget is not None:  # small blocks: runs of columns within a row
        monkeypatch.setattr(blocking, "GEMM_BLOCK_BYTES", budget)
    x, w, b = _draw(xs, ws, 1)
    y, cache, runs = conv_blocks.forward_parts(
        transpose(x, "NCHW", layout), w, b, stride=stride, pad=pad, layout=layout, parts=parts
    )
    for run in reversed(runs):  # any order
        run()
    want = reference.conv_forward(x, w, b, stride=stride, pad=pad)
    numpy.testing.assert_allclose(transpose(y, layout, "NCHW"), want, **tol("float64"))
    dy = numpy.random.default_rng(2).standard_normal(want.shape)
    cuts = numpy.linspace(0, ws[0], pieces + 1).astype(int)
    dys = [
        transpose(dy[:, a:b_], "NCHW", layout) for a, b_ in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    partials = [run() for run in conv_blocks.backward_parts(dys, cache, parts=parts)]
    dw, db = conv_blocks.gradients(dys, partials, cache)
    _, dw_ref, db_ref = reference.conv_backward(dy, x, w, stride=stride, pad=pad)
    numpy.testing.assert_allclose(dw, dw_ref, **tol("float64"))
    numpy.testing.assert_allclose(db, db_ref, **tol("float64"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_and_backward_in_one_call_and_in_float32(dtype):
    xs, ws, stride, pad = CASES[0]
    x, w, b = _draw(xs, ws, 3, dtype)
    y, cache = conv_blocks.forward(x, w, b, stride=stride, pad=pad)
    assert y.dtype == dtype and cache.x is x
    dy = numpy.random.default_rng(4).standard_normal(y.shape).astype(dtype)
    none, dw, db = conv_blocks.backward(dy, cache)
    assert none is None and dw.dtype == db.dtype == dtype
    x64, w64, b64, dy64 = (a.astype(float) for a in (x, w, b, dy))
    refs = (
        reference.conv_forward(x64, w64, b64, stride=stride),
        *reference.conv_backward(dy64, x64, w64, stride=stride)[1:],
    )
    # sums of |terms|: round-off is relative to these, not to the (cancelling) results
    scales = (
        reference.conv_forward(abs(x64), abs(w64), abs(b64), stride=stride),
        *reference.conv_backward(abs(dy64), abs(x64), abs(w64), stride=stride)[1:],
    )
    for got, want, scale in zip((y, dw, db), refs, scales, strict=True):
        assert (abs(got - want) <= tol(dtype)["rtol"] * scale).all()


def test_reused_memory_and_the_same_result_whatever_the_threads(monkeypatch):
    """Through a poisoned workspace, twice; the bands run concurrently give what one
    thread gives, bit for bit (the blocks depend only on the shapes)."""
    monkeypatch.setattr(workspace, "MIN_BYTES", 1)
    monkeypatch.setattr(workspace, "PLAN_BYTES", 1 << 12)
    import concurrent.futures

    xs, ws_, stride, pad = CASES[1]
    space = Poisoned()
    for seed in (5, 6):
        space.new_pass()
        x, w, b = _draw(xs, ws_, seed)
        xc = transpose(x, "NCHW", "CHWN")
        y, cache, runs = conv_blocks.forward_parts(
            xc, w, b, stride=stride, pad=pad, layout="CHWN", parts=2, ws=space
        )
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda run: run(), runs))
    y1, cache1, runs1 = conv_blocks.forward_parts(
        xc, w, b, stride=stride, pad=pad, layout="CHWN", parts=2
    )
    for run in runs1:
        run()
    numpy.testing.assert_array_equal(y, y1)
    dy = numpy.random.default_rng(7).standard_normal(y.shape)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(lambda run: run(), conv_blocks.backward_parts([dy], cache, parts=2)))
    serial = [run() for run in conv_blocks.backward_parts([dy], cache1, parts=2)]
    for a, b_ in zip(
        conv_blocks.gradients([dy], parts, cache),
        conv_blocks.gradients([dy], serial, cache1),
        strict=True,
    ):
        numpy.testing.assert_array_equal(a, b_)


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(x=(2, 4, 9, 9)), "x has 4 channels but w expects 3"),
        (dict(b=(5,)), "b has 5 entries but w has K=8 kernels"),
        (dict(stride=0), "stride must be"),
    ],
)
def test_bad_arguments_are_refused(args, message):
    shapes = dict(x=(2, 3, 23, 23), w=(8, 3, 11, 11), b=(8,))
    shapes.update({k: v for k, v in args.items() if k in shapes})
    x, w, b = (numpy.zeros(shapes[k]) for k in ("x", "w", "b"))
    with pytest.raises(ValueError, match=message):
        conv_blocks.forward(x, w, b, stride=args.get("stride", 4))


def test_dy_pieces_must_make_the_output():
    x, w, b = _draw(*CASES[0][:2], 1)
    y, cache = conv_blocks.forward(x, w, b, stride=4)
    with pytest.raises(ValueError, match="dy pieces"):
        conv_blocks.backward_parts([y[:, :5]], cache)
