"""The crossings between columns, as layers: ``forward -> (y, cache)``, ``backward(dy, cache)``.

Axis legend: N batch, C channels (one column's, or the concatenation of all columns'),
S side of a square map, F features, n the halo's width in channels.

Every argument ``parts`` (``grads``) is a list aligned with the columns of ``place`` (a
``refnet.columns.Placement``): ``parts[c]`` lives on column c's device. The axis of the
crossing is the channel axis of the maps (1 for NCHW, 0 for the network's CHWN; for an
fc layer's (N, F) input, 1). Every move goes through ``Placement.move``.

``forward`` / ``backward`` -- the exchange before conv3, fc6, fc7 and fc8:

    y[d] = concatenate([parts[0], parts[1], ...], axis)     on each destination d
    dx[c] = sum over destinations d of dy[d][offset_c : offset_c + width_c]  (along axis)

so an activation read by both columns gets the sum of both columns' gradients. With one
column there is nothing to exchange: y = parts, dx = dy. Every array made here comes
from the workspace of the column it lives on (``place.workspaces``, ``layers.workspace``).

``halo_forward`` / ``halo_backward`` -- LRN over all channels of the grouped form
(``lrn_mode="all"``): each column's maps with n neighbouring channels of the other column
appended at their shared boundary (column 0 after its last channel, column 1 before its
first); backward adds the halo's gradient to the channels it was copied from.
``trim_forward`` / ``trim_backward`` -- the column's own channels of such an extended
array (views), and backward zeros on the halo channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from refnet.layers.backend import Array
from refnet.layers.layout import along

if TYPE_CHECKING:
    from refnet.columns import Placement


class ExchangeCache(NamedTuple):
    widths: tuple[int, ...]  # each source column's width along ``axis``
    targets: tuple[int, ...]  # the destination columns, in the order of y
    devices: tuple[int, ...]  # each column's device (where each part came from)
    axis: int


class HaloCache(NamedTuple):
    n: int  # halo channels on each side of the boundary (0: no halo)
    axis: int


def forward(
    parts: Sequence[Array], *, place: Placement, axis: int = 1, to: Sequence[int] | None = None
) -> tuple[list[Array], ExchangeCache]:
    """(y, cache): ``y[i]`` the concatenation of every column's part along ``axis``, made
    on the device of destination column ``to[i]`` (default: every column)."""
    targets = tuple(range(place.columns) if to is None else to)
    widths = tuple(p.shape[axis] for p in parts)
    cache = ExchangeCache(widths, targets, tuple(place.devices), axis)
    if place.columns == 1:
        return [parts[0] for _ in targets], cache
    out = []
    for d in targets:
        with place.device(d):
            moved = [place.move(p, c, d) for c, p in enumerate(parts)]
            out.append(_concatenate(place, d, moved, axis))  # sum of widths on axis
    return out, cache


def _concatenate(place: Placement, c: int, arrays: Sequence[Array], axis: int) -> Array:
    """``arrays`` joined along ``axis`` into an array from column ``c``'s workspace."""
    shape = list(arrays[0].shape)
    shape[axis] = sum(a.shape[axis] for a in arrays)
    out = place.workspaces[c].empty(place.xp, tuple(shape), arrays[0].dtype)
    return place.xp.concatenate(arrays, axis=axis, out=out)


def backward(grads: Sequence[Array], cache: ExchangeCache, *, place: Placement) -> list[Array]:
    """dx per source column, on its device: its slice of every destination's gradient,
    summed over the destinations."""
    assert tuple(place.devices) == cache.devices, "the cache comes from another placement"
    if place.columns == 1:
        return [grads[0]]
    out, start = [], 0
    for c, width in enumerate(cache.widths):
        own = along(cache.axis, slice(start, start + width))  # column c's channels
        start += width
        with place.device(c):
            pieces = [place.move(g[own], d, c) for d, g in zip(cache.targets, grads, strict=True)]
            total = (
                place.workspaces[c].copy(place.xp, pieces[0]) if len(pieces) > 1 else pieces[0]
            )  # summed in place
            for piece in pieces[1:]:
                total += piece
        out.append(total)
    return out


def halo_forward(
    parts: Sequence[Array], *, place: Placement, n: int, axis: int = 1
) -> tuple[list[Array], HaloCache]:
    """(extended maps, cache): column 0's C0 + n channels, column 1's n + C1."""
    cache = HaloCache(n if place.columns > 1 else 0, axis)
    if cache.n == 0:
        return list(parts), cache
    p0, p1 = parts
    c0 = p0.shape[axis]
    with place.device(0):
        halo = place.move(p1[along(axis, slice(0, n))], 1, 0)
        e0 = _concatenate(place, 0, [p0, halo], axis)  # C0 + n channels
    with place.device(1):
        halo = place.move(p0[along(axis, slice(c0 - n, c0))], 0, 1)
        e1 = _concatenate(place, 1, [halo, p1], axis)  # n + C1 channels
    return [e0, e1], cache


def halo_backward(grads: Sequence[Array], cache: HaloCache, *, place: Placement) -> list[Array]:
    """Own-channel gradients plus the halo gradients the other column computed for them."""
    n, axis = cache
    if n == 0:
        return list(grads)
    d0, d1 = grads
    c0 = d0.shape[axis] - n
    ws0, ws1, xp = place.workspaces[0], place.workspaces[1], place.xp
    with place.device(0):
        g0 = ws0.copy(xp, d0[along(axis, slice(0, c0))])  # column 0's C0 channels
        g0[along(axis, slice(c0 - n, c0))] += place.move(d1[along(axis, slice(0, n))], 1, 0)
    with place.device(1):
        g1 = ws1.copy(xp, d1[along(axis, slice(n, None))])  # column 1's C1 channels
        g1[along(axis, slice(0, n))] += place.move(d0[along(axis, slice(c0, None))], 0, 1)
    return [g0, g1]


def trim_forward(ext: Sequence[Array], cache: HaloCache) -> list[Array]:
    """Each column's own channels of ``halo_forward``'s extended arrays (views)."""
    n, axis = cache
    if n == 0:
        return list(ext)
    return [
        ext[0][along(axis, slice(0, ext[0].shape[axis] - n))],
        ext[1][along(axis, slice(n, None))],
    ]


def trim_backward(grads: Sequence[Array], cache: HaloCache, *, place: Placement) -> list[Array]:
    """Gradients of the own channels as gradients of the extended arrays: zeros on the
    halo channels (nothing downstream read them)."""
    n, axis = cache
    if n == 0:
        return list(grads)
    out = []
    for c, g in enumerate(grads):
        with place.device(c):
            shape = list(g.shape)
            shape[axis] += n
            e = place.workspaces[c].zeros(place.xp, tuple(shape), g.dtype)  # C_c + n channels
            e[along(axis, slice(0, g.shape[axis]) if c == 0 else slice(n, None))] = g
        out.append(e)
    return out
