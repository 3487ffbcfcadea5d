"""Memory layouts of image batches: NCHW (PyTorch's) and CHWN (cuda-convnet's).

Axis legend: N batch, C channels, H/W height/width; A and B the two places the batch can
take around (H, W) in the channel-major view below (one of them is always 1).

``"NCHW"`` keeps each sample's maps together: x[n, c, h, w]. ``"CHWN"`` keeps the batch
innermost: x[c, h, w, n], the layout of the authors' cuda-convnet. The layers that look
at windows or channels (``conv``, ``pool``, ``lrn``) take either through ``layout=``; the
network runs in CHWN, where every copy those layers make (im2col, Winograd's tiles,
pooling's phase planes) moves runs of N contiguous values instead of a few elements of a
map row (docs/performance.md), and PyTorch twins and most tests use NCHW.

One code path serves both: a layer works on the **channel-major view**

    x5[c, a, h, w, b]      (C, A, H, W, B)
    NCHW: A = N, B = 1     x5 = x.transpose(1, 0, 2, 3)[..., None]
    CHWN: A = 1, B = N     x5 = x[:, None]

a strided view of the array (no copy), so slicing H and W on it is the same code for
both layouts, and a contiguous copy of a view ordered (..., A, H, W, B) keeps the batch
where the layout has it: outside the map for NCHW, innermost for CHWN. Flattening
(A, OH, OW, B) gives the order of positions P in im2col and Winograd's tiles:
(N, OH, OW) for NCHW and (OH, OW, N) for CHWN.
"""

from __future__ import annotations

from refnet.layers.backend import Array, get_array_module
from refnet.layers.workspace import FRESH, Fresh

__all__ = [
    "LAYOUTS",
    "check_layout",
    "dims",
    "shape",
    "channel_axis",
    "batch_places",
    "channel_major",
    "transpose",
    "along",
]

LAYOUTS = ("NCHW", "CHWN")


def check_layout(layer: str, layout: str) -> str:
    """``layout`` if it is one of ``LAYOUTS``, else ``ValueError`` naming ``layer``."""
    if layout not in LAYOUTS:
        raise ValueError(f"{layer}: layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def dims(shape_: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """(N, C, H, W) of an array of ``shape_`` in ``layout``."""
    if layout == "NCHW":
        return tuple(shape_)
    C, H, W, N = shape_
    return N, C, H, W


def shape(N: int, C: int, H: int, W: int, layout: str) -> tuple[int, int, int, int]:
    """The array shape of (N, C, H, W) in ``layout``."""
    return (N, C, H, W) if layout == "NCHW" else (C, H, W, N)


def channel_axis(layout: str) -> int:
    """The axis of C in ``layout`` (1 for NCHW, 0 for CHWN)."""
    return 1 if layout == "NCHW" else 0


def batch_places(N: int, layout: str) -> tuple[int, int]:
    """(A, B) of the channel-major view for a batch of N in ``layout``."""
    return (N, 1) if layout == "NCHW" else (1, N)


def channel_major(x: Array, layout: str) -> Array:
    """The (C, A, H, W, B) view of ``x`` described in the module doc (no copy)."""
    if layout == "NCHW":
        return x.transpose(1, 0, 2, 3)[..., None]  # (C, N, H, W, 1)
    return x[:, None]  # (C, 1, H, W, N)


def along(axis: int, s: int | slice) -> tuple[int | slice, ...]:
    """An index applying slice ``s`` to ``axis`` and taking everything before it, e.g.
    ``x[along(channel_axis(layout), slice(0, n))]``: the first n channels in any layout."""
    return (slice(None),) * axis + (s,)


def transpose(x: Array, src: str, dst: str, ws: Fresh = FRESH) -> Array:
    """``x`` (4-D, in layout ``src``) in layout ``dst``: a contiguous copy from ``ws``
    (``layers.workspace``), or ``x`` itself when the layouts are the same."""
    if src == dst:
        return x
    order = (3, 0, 1, 2) if src == "CHWN" else (1, 2, 3, 0)  # to NCHW, to CHWN
    return ws.copy(get_array_module(x), x.transpose(order))
