"""PyTorch twins of refnet's layers: the same maths computed by PyTorch's own operators.

Each twin takes NumPy arrays (inputs, parameters, the upstream gradient), runs PyTorch's
operator forward in the same dtype, back-propagates the given upstream gradient with
``torch.autograd.grad``, and returns NumPy arrays keyed like the quantities refnet's
``backward`` returns: ``y``, ``dx``, ``dw``, ``db``.

Axis legend: N batch, C input channels, K output channels (kernels), G groups,
H/W input height/width, Ho/Wo output height/width, D features of a linear layer.

Where the paper (and refnet) and PyTorch state a layer differently, the translation is
explicit code below, with a comment; never a looser tolerance:

- LRN: the paper multiplies the window sum of squares by alpha; PyTorch's
  ``local_response_norm`` multiplies by alpha / size. The twin passes ``alpha * size``.
  PyTorch's k defaults to 1 where the paper's is 2, so k is always passed.
- Dropout: PyTorch draws its own mask, so the twin cannot call ``F.dropout`` with ours;
  it multiplies by the SAME keep-mask and applies the mode's scale (paper: none in
  training, 1 - p at test; inverted, PyTorch's: 1 / (1 - p) in training, none at test).
  ``verify.conventions`` checks that ``F.dropout`` itself is the inverted form.
- Softmax cross-entropy: ``F.cross_entropy`` with its default mean over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike

from refnet.options import CHOICES


def tensor(a: ArrayLike, grad: bool = False) -> torch.Tensor:
    """A torch tensor holding a copy of the NumPy array ``a`` (same dtype)."""
    t = torch.from_numpy(numpy.array(a, copy=True))
    return t.requires_grad_(grad)


def _grads(y: torch.Tensor, inputs: Sequence[torch.Tensor], dy: ArrayLike):
    """Gradients of <y, dy> with respect to ``inputs`` (tensors), as NumPy arrays."""
    gs = torch.autograd.grad(y, inputs, grad_outputs=tensor(dy))
    return [g.detach().numpy() for g in gs]


def conv(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike,
    dy: ArrayLike,
    *,
    stride: int = 1,
    pad: int = 0,
    groups: int = 1,
) -> dict[str, numpy.ndarray]:
    """``F.conv2d``: x (N, C, H, W), w (K, C/G, kh, kw), b (K,), dy (N, K, Ho, Wo)."""
    tx, tw, tb = tensor(x, True), tensor(w, True), tensor(b, True)
    y = F.conv2d(tx, tw, tb, stride=stride, padding=pad, groups=groups)
    dx, dw, db = _grads(y, (tx, tw, tb), dy)
    return {"y": y.detach().numpy(), "dx": dx, "dw": dw, "db": db}


def conv_out_shape(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    *,
    stride: int = 1,
    pad: int = 0,
    groups: int = 1,
) -> tuple[int, ...]:
    """The output shape PyTorch gives a conv (no gradient, zeros in)."""
    x = torch.zeros(x_shape, dtype=torch.float64)
    w = torch.zeros(w_shape, dtype=torch.float64)
    return tuple(F.conv2d(x, w, stride=stride, padding=pad, groups=groups).shape)


def relu(x: ArrayLike, dy: ArrayLike) -> dict[str, numpy.ndarray]:
    """``F.relu``; its gradient at exactly 0 is 0."""
    tx = tensor(x, True)
    y = F.relu(tx)
    (dx,) = _grads(y, (tx,), dy)
    return {"y": y.detach().numpy(), "dx": dx}


def lrn_torch(
    tx: torch.Tensor, *, size: int, alpha: float, beta: float, k: float, groups: int = 1
) -> torch.Tensor:
    """The paper's LRN on a torch tensor, via ``F.local_response_norm``.

    PyTorch's coefficient on the window sum is alpha_torch / size; the paper's is alpha.
    So alpha_torch = alpha * size. k is passed (PyTorch's default is 1, the paper's 2).
    ``groups`` > 1 normalises each block of C/G channels on its own (the authors'
    two-column network: a column never sees the other column's maps before conv3).
    """
    alpha_torch = alpha * size  # PyTorch divides alpha by size; the paper does not
    if groups == 1:
        return F.local_response_norm(tx, size, alpha=alpha_torch, beta=beta, k=k)
    parts = torch.chunk(tx, groups, dim=1)  # G tensors of (N, C/G, H, W)
    return torch.cat(
        [F.local_response_norm(p, size, alpha=alpha_torch, beta=beta, k=k) for p in parts], dim=1
    )  # (N, C, H, W)


def lrn(
    x: ArrayLike,
    dy: ArrayLike,
    *,
    size: int = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 2.0,
    groups: int = 1,
) -> dict[str, numpy.ndarray]:
    """LRN with the paper's alpha (see ``lrn_torch``): x, dy (N, C, H, W)."""
    tx = tensor(x, True)
    y = lrn_torch(tx, size=size, alpha=alpha, beta=beta, k=k, groups=groups)
    (dx,) = _grads(y, (tx,), dy)
    return {"y": y.detach().numpy(), "dx": dx}


def pool(
    x: ArrayLike, dy: ArrayLike, *, size: int = 3, stride: int = 2, ceil_mode: bool = False
) -> dict[str, numpy.ndarray]:
    """``F.max_pool2d``: floor rounding unless ``ceil_mode``; a tie goes to the first max."""
    tx = tensor(x, True)
    y = F.max_pool2d(tx, size, stride, ceil_mode=ceil_mode)
    (dx,) = _grads(y, (tx,), dy)
    return {"y": y.detach().numpy(), "dx": dx}


def gap(x: ArrayLike, dy: ArrayLike) -> dict[str, numpy.ndarray]:
    """``F.adaptive_avg_pool2d(x, 1)``, flattened to (N, C): the mean over (H, W)."""
    tx = tensor(x, True)
    y = F.adaptive_avg_pool2d(tx, 1).flatten(1)
    (dx,) = _grads(y, (tx,), dy)
    return {"y": y.detach().numpy(), "dx": dx}


def dropout_torch(tx: torch.Tensor, mask: Any, *, p: float, train: bool, mode: str) -> torch.Tensor:
    """Dropout with a given keep-mask (1 keep, 0 drop) on a torch tensor.

    paper:    train y = x * mask;             test y = x * (1 - p)
    inverted: train y = x * mask / (1 - p);   test y = x          (PyTorch's F.dropout)
    """
    if mode not in CHOICES["dropout_mode"]:
        raise ValueError(
            f"dropout twin: mode must be one of {CHOICES['dropout_mode']}, got {mode!r}"
        )
    if train:  # a NumPy mask, or a torch tensor already on tx's device (the bench)
        mask = mask if isinstance(mask, torch.Tensor) else tensor(mask)
    if mode == "paper":
        return tx * mask if train else tx * (1.0 - p)
    return tx * mask / (1.0 - p) if train else tx


def dropout(
    x: ArrayLike,
    dy: ArrayLike,
    *,
    p: float = 0.5,
    train: bool = True,
    mask: ArrayLike | None = None,
    mode: str = "paper",
) -> dict[str, numpy.ndarray]:
    """Dropout twin (see ``dropout_torch``): x, dy, mask (N, D)."""
    tx = tensor(x, True)
    y = dropout_torch(tx, mask, p=p, train=train, mode=mode)
    (dx,) = _grads(y, (tx,), dy)
    return {"y": y.detach().numpy(), "dx": dx}


def linear(x: ArrayLike, w: ArrayLike, b: ArrayLike, dy: ArrayLike) -> dict[str, numpy.ndarray]:
    """``F.linear``: x (N, Din), w (Dout, Din), b (Dout,), y = x w^T + b."""
    tx, tw, tb = tensor(x, True), tensor(w, True), tensor(b, True)
    y = F.linear(tx, tw, tb)
    dx, dw, db = _grads(y, (tx, tw, tb), dy)
    return {"y": y.detach().numpy(), "dx": dx, "dw": dw, "db": db}


def softmax_cross_entropy(
    logits: ArrayLike, labels: ArrayLike, dloss: float
) -> dict[str, numpy.ndarray]:
    """``F.cross_entropy`` (mean over the batch): loss and d(dloss * loss)/dlogits."""
    tz = tensor(logits, True)
    loss = F.cross_entropy(tz, torch.from_numpy(numpy.asarray(labels, dtype=numpy.int64)))
    (dz,) = torch.autograd.grad(loss, (tz,), grad_outputs=torch.tensor(dloss, dtype=tz.dtype))
    return {"loss": loss.detach().numpy(), "dlogits": dz.numpy()}
