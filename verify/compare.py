"""How two arrays are compared, the tolerance table, and the report (table and JSON).

The error measures, for our array ``a`` and PyTorch's ``b`` of the same shape:

    max abs err = max |a - b|
    max rel err = max |a - b| / max |b|          (a normwise relative error, max norm)

The relative error divides by the largest magnitude of the whole reference array, not
element by element: an elementwise ratio explodes on entries that are zero up to
round-off (a gradient that cancels, a ReLU output at 0) and would say nothing about the
quality of the computation. If ``max |b| == 0`` the relative error is 0 when ``a``
is also all zeros and infinity otherwise. A row passes when ``max rel err <= tol``.

Tolerances (``TOLERANCE``), per dtype and per kind of comparison:

- float64: 1e-12 for a single layer, 1e-10 for the whole network and for SGD steps
  (the project's bounds). Round-off is ~1e-16 per operation; the deepest single-layer
  reduction here (an 11x11x3 conv, a 5x5x48 grouped conv, the weight gradient summed
  over N*Ho*Wo positions) stays near 1e-15, and the network's eight layers forward and
  back stay near 1e-13, so both bounds hold with two orders of margin.
- float32: unit round-off u = 2**-24 = 6e-8. Summing n products in two different orders
  (our GEMM versus PyTorch's kernels) differs by about sqrt(n) * u typically and n * u at
  worst. A single layer's deepest sum has n ~ 1e3-1e4 (weight gradients over positions,
  5x5x48 windows), so sqrt(n) * u ~ 6e-6: the layer tolerance is 2e-5. The network
  chains 8 layers forward and 8 back, each adding a relative error of that size and
  multiplying the incoming one by the layer's conditioning (max pooling and ReLU pass it
  through, LRN with the paper's alpha barely touches it), and a parameter gradient at the
  bottom of the net (conv1.weight) is a sum of ~N*55*55 such products: the network
  tolerance is 16 * 6e-6 rounded up to 1e-4 (measured: see docs/conventions.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy
from numpy.typing import ArrayLike, DTypeLike

TOLERANCE = {
    "float64": {"layer": 1e-12, "network": 1e-10},
    "float32": {"layer": 2e-5, "network": 1e-4},
}


def tolerance(dtype: DTypeLike, kind: str) -> float:
    """The relative tolerance for ``dtype`` (float32/float64) and ``kind`` (layer/network)."""
    name = numpy.dtype(dtype).name
    if name not in TOLERANCE:
        raise ValueError(f"tolerance: dtype must be float32 or float64, got {name!r}")
    if kind not in TOLERANCE[name]:
        raise ValueError(f"tolerance: kind must be one of {sorted(TOLERANCE[name])}, got {kind!r}")
    return TOLERANCE[name][kind]


def errors(ours: ArrayLike, theirs: ArrayLike) -> tuple[float, float]:
    """(max abs err, max rel err) of ``ours`` against the reference ``theirs`` (see module doc)."""
    a = numpy.asarray(ours, dtype=numpy.float64)
    b = numpy.asarray(theirs, dtype=numpy.float64)
    if a.shape != b.shape:
        raise ValueError(f"errors: shapes differ, ours {a.shape} vs reference {b.shape}")
    if a.size == 0:
        return 0.0, 0.0
    max_abs = float(numpy.max(numpy.abs(a - b)))
    scale = float(numpy.max(numpy.abs(b)))
    if scale == 0.0:
        return max_abs, (0.0 if max_abs == 0.0 else float("inf"))
    return max_abs, max_abs / scale


@dataclasses.dataclass
class Row:
    """One line of the report.

    ``status`` is PASS/FAIL when ``tol`` is set and INFO for a measurement that is shown,
    not judged (for example how far Caffe's all-channel LRN is from the authors').
    """

    part: str
    case: str
    quantity: str
    max_abs: float
    max_rel: float
    tol: float | None
    status: str
    note: str = ""


def judged(
    part: str,
    case: str,
    quantity: str,
    ours: ArrayLike,
    theirs: ArrayLike,
    tol: float,
    note: str = "",
) -> Row:
    """A PASS/FAIL row comparing ``ours`` with the reference ``theirs`` at relative ``tol``.

    A shape mismatch, or ours in another floating dtype than the reference (a silent
    upcast or downcast), is a FAIL with the reason in the note.
    """
    a, b = numpy.asarray(ours), numpy.asarray(theirs)
    if a.shape != b.shape:
        return Row(
            part,
            case,
            quantity,
            float("nan"),
            float("nan"),
            tol,
            "FAIL",
            f"shape ours {a.shape} vs reference {b.shape}",
        )
    if a.ndim > 0 and a.dtype != b.dtype:
        note = f"dtype ours {a.dtype} vs reference {b.dtype}" + (f"; {note}" if note else "")
        max_abs, max_rel = errors(a, b)
        return Row(part, case, quantity, max_abs, max_rel, tol, "FAIL", note)
    max_abs, max_rel = errors(a, b)
    status = "PASS" if max_rel <= tol else "FAIL"
    return Row(part, case, quantity, max_abs, max_rel, tol, status, note)


def judged_rows(
    part: str,
    case: str,
    ours: Mapping[str, ArrayLike],
    theirs: Mapping[str, ArrayLike],
    tol: float,
    note: str = "",
) -> list[Row]:
    """One ``judged`` row per quantity of the dict ``theirs``, against ``ours[quantity]``."""
    return [judged(part, case, q, ours[q], theirs[q], tol, note) for q in theirs]


def worst(
    part: str,
    case: str,
    quantity: str,
    ours: Mapping[str, ArrayLike],
    theirs: Mapping[str, ArrayLike],
    tol: float,
) -> Row:
    """One row for two dicts of arrays (every parameter): the worst comparison (a FAIL
    first, then the largest error), noting when every array is bit-identical."""
    judged_rows = [judged(part, case, quantity, ours[k], theirs[k], tol, note=k) for k in theirs]
    row = max(judged_rows, key=lambda r: (r.status == "FAIL", r.max_rel))
    if row.status == "PASS" and all(numpy.array_equal(ours[k], theirs[k]) for k in theirs):
        row.note = f"all {len(theirs)} arrays bit-identical"
    return row


def run_cases(
    cases: Mapping[str, Callable[[numpy.random.Generator, numpy.dtype, float], list[Row]]],
    what: str,
    dtype: DTypeLike,
    seed: int,
    which: Iterable[str] | None = None,
    offset: int = 0,
) -> list[Row]:
    """Rows of the named ``cases`` (``{name: fn(rng, dtype, tol)}``; all when ``which``
    is None) at the layer tolerance, case k drawing from ``default_rng([seed, offset + k])``
    (k its index in ``cases``, so each case's numbers do not depend on which others run)."""
    dtype = numpy.dtype(dtype)
    tol = tolerance(dtype, "layer")
    names = list(cases) if which is None else list(which)
    unknown = [n for n in names if n not in cases]
    if unknown:
        raise ValueError(f"{what}: unknown {unknown}, choose from {list(cases)}")
    rows = []
    for name in names:
        rng = numpy.random.default_rng([seed, offset + list(cases).index(name)])
        rows += cases[name](rng, dtype, tol)
    return rows


def draw(
    rng: numpy.random.Generator, shape: int | tuple[int, ...], dtype: DTypeLike, scale: float = 1.0
) -> numpy.ndarray:
    """``scale`` times standard normal draws of ``shape`` from ``rng``, in ``dtype``."""
    return (scale * rng.standard_normal(shape)).astype(dtype)


def check(
    part: str,
    case: str,
    quantity: str,
    ok: bool,
    note: str = "",
    max_abs: float = float("nan"),
    max_rel: float = float("nan"),
    tol: float | None = None,
) -> Row:
    """A PASS/FAIL row for a condition that is not an array comparison (a shape, a set)."""
    return Row(part, case, quantity, max_abs, max_rel, tol, "PASS" if ok else "FAIL", note)


def info(
    part: str, case: str, quantity: str, ours: ArrayLike, theirs: ArrayLike, note: str = ""
) -> Row:
    """An INFO row: the difference is measured and shown, not judged."""
    max_abs, max_rel = errors(ours, theirs)
    return Row(part, case, quantity, max_abs, max_rel, None, "INFO", note)


def all_passed(rows: Iterable[Row]) -> bool:
    return all(r.status != "FAIL" for r in rows)


def _fmt(v: float | None):
    if v is None:
        return "-"
    if isinstance(v, float) and numpy.isnan(v):
        return "-"
    return f"{v:.2e}"


def format_table(rows: Sequence[Row]) -> str:
    """The report as a plain-text table, one row per comparison, then a summary line."""
    header = ("part", "case", "quantity", "max abs err", "max rel err", "tol", "result")
    lines = [
        (
            r.part,
            r.case,
            r.quantity,
            _fmt(r.max_abs),
            _fmt(r.max_rel),
            _fmt(r.tol),
            r.status + (f"  {r.note}" if r.note else ""),
        )
        for r in rows
    ]
    widths = [
        max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
        for i, h in enumerate(header)
    ]
    widths[-1] = len(header[-1])
    out = [
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    for line in lines:
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    n_fail = sum(r.status == "FAIL" for r in rows)
    n_pass = sum(r.status == "PASS" for r in rows)
    n_info = sum(r.status == "INFO" for r in rows)
    out.append(f"{n_pass} passed, {n_fail} failed, {n_info} informational")
    return "\n".join(out)


def report_dict(rows: Sequence[Row], **meta: Any) -> dict[str, Any]:
    """The report as a JSON-ready dict: ``meta`` (dtype, seed, ...), ``passed`` and ``rows``.

    Infinite or NaN errors become the strings "inf"/"nan" so the JSON stays standard.
    """

    def clean(v: object) -> object:
        if isinstance(v, float) and not numpy.isfinite(v):
            return "nan" if numpy.isnan(v) else "inf"
        return v

    return {
        **meta,
        "passed": all_passed(rows),
        "rows": [{k: clean(v) for k, v in dataclasses.asdict(r).items()} for r in rows],
    }
