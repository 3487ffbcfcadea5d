"""The run's pictures: training curves and the first layer's kernels (the paper's Figure 3).

Both use matplotlib's Agg backend (no display needed) and are written atomically
(``data.files.atomic_path``). Importing this module loads everything drawing needs (the
backend's extension, the fonts, the PNG writer: ``load_drawing``), so that a Ctrl-C during
a run never lands half-way through loading them, which would break their initialisation.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from refnet.data.files import atomic_path  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def load_drawing() -> None:
    """Draw one small figure with what the plots use (lines, markers, a legend, an
    image, a title, tight layout) into memory as a PNG: matplotlib and Pillow load their
    remaining modules and extensions on first use, and this is that first use
    (about 0.2 s)."""
    fig = plt.figure(figsize=(1, 1))
    try:
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], "o-", label="line")
        ax.imshow(numpy.zeros((2, 2, 3)), interpolation="nearest")
        ax.set_title("title")
        ax.legend()
        fig.tight_layout()
        fig.savefig(io.BytesIO(), dpi=20, format="png")
    finally:
        plt.close(fig)


load_drawing()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """``fig`` as a PNG at ``path``, written atomically (``data.files.atomic_path``)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")  # the temporary's name has no .png
    finally:
        plt.close(fig)
    return path


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Loss and top-1/top-5 validation error per epoch from the epoch records of a run."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    ax_err.plot(epochs, [100 * r["val_top1_error"] for r in history], "o-", label="val top-1")
    ax_err.plot(epochs, [100 * r["val_top5_error"] for r in history], "o-", label="val top-5")
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("error (%)")
    ax_err.set_ylim(0, 100)
    ax_err.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def kernel_grid(w: numpy.ndarray, cols: int = 8) -> numpy.ndarray:
    """conv1 kernels (K, 3, kh, kw) as one RGB image, each kernel scaled to [0, 1] on its own.

    Returns an array (rows * (kh + 1) - 1, cols * (kw + 1) - 1, 3) with white 1-pixel gaps.
    """
    w = numpy.asarray(w, dtype=numpy.float64)
    k, c, kh, kw = w.shape
    if c != 3:
        raise ValueError(f"kernel_grid: expected RGB kernels (K, 3, kh, kw), got {w.shape}")
    rows = -(-k // cols)
    grid = numpy.ones((rows * (kh + 1) - 1, cols * (kw + 1) - 1, 3))
    for i in range(k):
        img = w[i].transpose(1, 2, 0)  # (kh, kw, 3)
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo) if hi > lo else numpy.full_like(img, 0.5)
        r, q = divmod(i, cols)
        grid[r * (kh + 1) : r * (kh + 1) + kh, q * (kw + 1) : q * (kw + 1) + kw] = img
    return grid


def plot_conv1(weight: numpy.ndarray, columns: int, path: str | Path) -> Path:
    """conv1's kernels as images, one panel per column (the paper's Figure 3 layout).

    ``weight`` is conv1's weight in the grouped single-device layout (K, 3, kh, kw); the
    first K/columns kernels belong to column 0, the next to column 1.
    """
    weight = numpy.asarray(weight)
    columns = max(int(columns), 1)
    per = weight.shape[0] // columns
    fig, axes = plt.subplots(columns, 1, figsize=(8, 2.2 * columns + 0.5), squeeze=False)
    for g in range(columns):
        ax = axes[g, 0]
        ax.imshow(
            kernel_grid(weight[g * per : (g + 1) * per], cols=min(per, 16)), interpolation="nearest"
        )
        ax.set_title(
            f"conv1, column {g} ({per} kernels)" if columns > 1 else f"conv1 ({per} kernels)"
        )
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def neighbors_figsize(rows: int, k: int) -> tuple[float, float]:
    """(width, height) in inches of ``plot_neighbors``'s grid (multiples of 0.5, so the
    PNG is exactly 100 times that in pixels): a 1.5 inch cell per image, 3 for the bars."""
    return 1.5 * (k + 1) + 3.0, 2.0 * rows + 0.5


def plot_neighbors(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """The paper's Figure 4: one row per query, its picture, its top classes as bars, and
    its nearest training images captioned with class name and distance.

    ``rows``: dicts with ``image`` (H, W, 3) uint8, ``caption``, ``top`` [(class name,
    probability)] and ``neighbors`` [(image, class name, distance)], nearest first;
    optionally ``label``, the true class name, whose bar is drawn green.
    """
    k = max(len(r["neighbors"]) for r in rows)
    fig, axes = plt.subplots(
        len(rows),
        k + 2,
        figsize=neighbors_figsize(len(rows), k),
        squeeze=False,
        gridspec_kw={"width_ratios": [1, 2] + [1] * k},
    )
    height = fig.get_figheight()
    fig.subplots_adjust(
        left=0.01, right=0.99, bottom=0.3 / height, top=1 - 0.75 / height, wspace=0.12, hspace=0.45
    )
    fig.suptitle(
        "query | top-5 classes (true class green) | nearest training images by "
        "fc7 features, Euclidean distance",
        fontsize=10,
    )
    for ax_row, row in zip(axes, rows, strict=True):
        ax_row[0].imshow(row["image"])
        ax_row[0].set_title(row["caption"], fontsize=8)
        bars = ax_row[1]
        names = [n for n, _ in row["top"]]
        probs = [p for _, p in row["top"]]
        y = numpy.arange(len(names))
        colors = ["#a1d99b" if n == row.get("label") else "#9ecae1" for n in names]
        bars.barh(y, probs, color=colors, height=0.8)  # the true class in green
        for yi, (name, p) in zip(y, row["top"], strict=True):
            bars.text(0.02, yi, f"{name}  {p:.1%}", va="center", fontsize=7)
        bars.set_xlim(0, 1)
        bars.set_ylim(len(names) - 0.5, -0.5)  # the most probable on top
        bars.set_yticks([])
        bars.tick_params(axis="x", labelsize=6)
        for ax, (img, name, dist) in zip(ax_row[2:], row["neighbors"], strict=True):
            ax.imshow(img)
            ax.set_title(f"{name}\n{dist:.3g}", fontsize=7)
        for ax in [ax_row[0], *ax_row[2:]]:
            ax.axis("off")
    return save_figure(fig, path)
