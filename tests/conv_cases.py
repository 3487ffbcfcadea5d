"""Drawn convolution cases shared by the im2col and Winograd tests (test_conv.py,
test_winograd.py): Hypothesis strategies for their shapes and hyperparameters, the arrays
of a case, the keyword arguments per algorithm, the round-off growth of Winograd's
transforms, and the layout conversions."""

import numpy
from hypothesis import strategies as st

from refnet.layers import backend, winograd
from refnet.layers.layout import LAYOUTS, transpose


@st.composite
def conv_configs(draw, max_kernel=11):
    """Shapes and hyperparameters with the kernel inside the padded input."""
    groups = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 4))
    pad = draw(st.integers(0, 3))
    kh = draw(st.integers(1, max_kernel))
    kw = draw(st.integers(1, max_kernel))
    h0, w0 = max(1, kh - 2 * pad), max(1, kw - 2 * pad)
    return dict(
        N=draw(st.integers(1, 2)),
        C=groups * draw(st.integers(1, 2)),
        K=groups * draw(st.integers(1, 2)),
        H=draw(st.integers(h0, h0 + 5)),
        W=draw(st.integers(w0, w0 + 5)),
        kh=kh,
        kw=kw,
        stride=stride,
        pad=pad,
        groups=groups,
        seed=draw(st.integers(0, 2**32 - 1)),
        layout=draw(st.sampled_from(LAYOUTS)),
    )


@st.composite
def winograd_configs(draw):
    """Stride-1 square-kernel convolutions with a tile the point table supports."""
    groups = draw(st.integers(1, 3))
    r = draw(st.integers(1, 5))
    tile = draw(st.integers(1, min(4, winograd.MAX_POINTS + 2 - r)))
    pad = draw(st.integers(0, 2))
    h0 = max(1, r - 2 * pad)
    return dict(
        N=draw(st.integers(1, 2)),
        C=groups * draw(st.integers(1, 2)),
        K=groups * draw(st.integers(1, 2)),
        H=draw(st.integers(h0, h0 + 6)),
        W=draw(st.integers(h0, h0 + 6)),
        kh=r,
        kw=r,
        stride=1,
        pad=pad,
        groups=groups,
        tile=tile,
        seed=draw(st.integers(0, 2**32 - 1)),
        layout=draw(st.sampled_from(LAYOUTS)),
    )


CONFIGS = {"gemm": conv_configs(), "winograd": winograd_configs()}


def draw_arrays(cfg, dtype=numpy.float64):
    rng = numpy.random.default_rng(cfg["seed"])
    x = rng.standard_normal((cfg["N"], cfg["C"], cfg["H"], cfg["W"])).astype(dtype)
    w = rng.standard_normal((cfg["K"], cfg["C"] // cfg["groups"], cfg["kh"], cfg["kw"])).astype(
        dtype
    )
    b = rng.standard_normal(cfg["K"]).astype(dtype)
    return x, w, b, rng


def hyper(cfg):
    return dict(stride=cfg["stride"], pad=cfg["pad"], groups=cfg["groups"])


def conv_args(cfg, algo):
    """``conv.forward``'s keyword arguments for ``cfg`` by ``algo`` (without the layout)."""
    if algo == "winograd":
        return dict(pad=cfg["pad"], groups=cfg["groups"], algo="winograd", tile=cfg["tile"])
    return hyper(cfg)


def growth(algo, cfg):
    """How much the algorithm can amplify round-off relative to the direct sum of |terms|:
    1 for im2col; for Winograd F(m, r) the largest entry of |AT| ((|G| 1) * (|BT| 1)) / r,
    a 1-D tile's sum of |terms| through the transforms over the direct sum's, squared for
    the two dimensions."""
    if algo == "gemm":
        return 1.0
    at, g, bt = (
        abs(numpy.array(a, dtype=float)) for a in winograd.transforms(cfg["tile"], cfg["kh"])
    )
    through = at @ ((g @ numpy.ones(g.shape[1])) * (bt @ numpy.ones(bt.shape[1])))
    return float(through.max() / cfg["kh"]) ** 2


def in_layout(x, cfg):
    """x (NCHW, as drawn) in the config's layout (NCHW when it names none)."""
    return transpose(x, "NCHW", cfg.get("layout", "NCHW"))


def from_layout(y, cfg):
    """y (a host array in the config's layout) as NCHW."""
    return transpose(backend.asnumpy(y), cfg.get("layout", "NCHW"), "NCHW")
