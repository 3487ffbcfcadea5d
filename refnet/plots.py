"""The run's pictures: training curves and the first layer's kernels (the paper's Figure 3).

Both use matplotlib's Agg backend (no display needed) and are written atomically
(``data.files.atomic_path``).
"""

from pathlib import Path

import numpy

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from data.files import atomic_path  # noqa: E402


def _save(fig, path):
    """``fig`` as a PNG at ``path``, written atomically (``data.files.atomic_path``)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")    # the temporary's name has no .png
    finally:
        plt.close(fig)
    return path


def plot_curves(history, path):
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
    return _save(fig, path)


def kernel_grid(w, cols=8):
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
        img = w[i].transpose(1, 2, 0)                                # (kh, kw, 3)
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo) if hi > lo else numpy.full_like(img, 0.5)
        r, q = divmod(i, cols)
        grid[r * (kh + 1):r * (kh + 1) + kh, q * (kw + 1):q * (kw + 1) + kw] = img
    return grid


def plot_conv1(weight, columns, path):
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
        ax.imshow(kernel_grid(weight[g * per:(g + 1) * per], cols=min(per, 16)),
                  interpolation="nearest")
        ax.set_title(f"conv1, column {g} ({per} kernels)" if columns > 1
                     else f"conv1 ({per} kernels)")
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)
