"""A PyTorch twin of the whole two-column network, built from refnet's state_dict.

The twin is an ``nn.Module`` written from the paper's description, not from refnet's
code: conv -> ReLU -> LRN -> max pool twice, conv3 over both columns, conv4 and conv5
each within its column, max pool, ``torch.flatten`` (channel, row, column order), then
fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout -> fc8, softmax cross-entropy (mean).
Dropout sits after the ReLUs of fc6 and fc7 as in the paper (torchvision puts it before
fc6 and fc7 instead). With ``head="gap"`` the end is instead conv5 -> ReLU -> 1x1
``head`` convolution -> ``F.adaptive_avg_pool2d(., 1)`` flattened (no pool5, no fc layers).

Translations from the paper to PyTorch, each explicit:

- Groups: the two columns are the grouped single-device form; each conv's ``groups`` is
  read off the weight shapes (in channels / weight.shape[1]).
- LRN: ``verify.twins.lrn_torch`` (alpha * size, k passed). ``lrn_mode="column"``
  normalises each column's channels on their own (the authors' code); ``"all"`` runs one
  LRN over all channels (Caffe's bvlc_alexnet).
- Dropout: the SAME keep-masks as refnet's run, scaled by the mode
  (``verify.twins.dropout_torch``).

Axis legend: N batch, C channels, H/W height/width, D features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy
import torch
from numpy.typing import ArrayLike
from torch import nn

from refnet.options import CHOICES
from refnet.verify.twins import dropout_torch, lrn_torch, tensor

CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")
FCS = ("fc6", "fc7", "fc8")


class TwinAlexNet(nn.Module):
    """The network in PyTorch, from a NumPy ``state_dict`` in refnet's grouped form.

    ``geometry``: five (stride, pad) pairs for conv1..conv5 (kernels come from the
    weights); ``columns``: how many columns LRN sees in ``"column"`` mode.
    """

    conv1: nn.Conv2d
    conv2: nn.Conv2d
    conv3: nn.Conv2d
    conv4: nn.Conv2d
    conv5: nn.Conv2d
    head: nn.Conv2d
    fc6: nn.Linear
    fc7: nn.Linear
    fc8: nn.Linear

    def __init__(
        self,
        state_dict: Mapping[str, numpy.ndarray],
        geometry: Sequence[tuple[int, int]],
        *,
        columns: int = 2,
        lrn: bool = True,
        lrn_mode: str = "column",
        lrn_params: tuple[int, float, float, float] = (5, 1e-4, 0.75, 2.0),
        pool: tuple[int, int] = (3, 2),
        pool_rounding: str = "floor",
        dropout: float = 0.5,
        dropout_mode: str = "paper",
        head: str = "fc",
    ) -> None:
        super().__init__()
        if head not in CHOICES["head"]:
            raise ValueError(f"twin: head must be one of {CHOICES['head']}, got {head!r}")
        self.head_kind = head
        if lrn_mode not in CHOICES["lrn_mode"]:
            raise ValueError(
                f"twin: lrn_mode must be one of {CHOICES['lrn_mode']}, got {lrn_mode!r}"
            )
        if len(geometry) != 5:
            raise ValueError(f"twin: geometry needs 5 (stride, pad) pairs, got {geometry!r}")
        self.lrn = lrn
        self.lrn_groups = columns if lrn_mode == "column" else 1
        self.lrn_params: dict[str, Any] = dict(
            zip(("size", "alpha", "beta", "k"), lrn_params, strict=True)
        )
        self.pool = nn.MaxPool2d(pool[0], pool[1], ceil_mode=pool_rounding == "ceil")
        self.p = dropout
        self.dropout_mode = dropout_mode
        dtype = torch.from_numpy(numpy.asarray(state_dict["conv1.weight"][:1])).dtype
        c_in = 3  # the image's channels
        for name, (stride, pad) in zip(CONVS, geometry, strict=True):
            w = state_dict[f"{name}.weight"]  # (K, C/G, kh, kw)
            groups = c_in // w.shape[1]
            setattr(
                self,
                name,
                nn.Conv2d(
                    c_in,
                    w.shape[0],
                    tuple(w.shape[2:]),
                    stride=stride,
                    padding=pad,
                    groups=groups,
                    dtype=dtype,
                ),
            )
            c_in = w.shape[0]
        if head == "gap":
            w = state_dict["head.weight"]  # (classes, C5, 1, 1)
            self.head = nn.Conv2d(c_in, w.shape[0], 1, dtype=dtype)
        for name in FCS if head == "fc" else ():
            w = state_dict[f"{name}.weight"]  # (Dout, Din)
            setattr(self, name, nn.Linear(w.shape[1], w.shape[0], dtype=dtype))
        self.load_state_dict({k: tensor(v) for k, v in state_dict.items()}, strict=True)

    def _lrn(self, h: torch.Tensor):
        if not self.lrn:
            return h
        return lrn_torch(h, groups=self.lrn_groups, **self.lrn_params)

    def _dropout(self, h: torch.Tensor, mask: Any, train: bool):
        if not self.p:
            return h
        return dropout_torch(h, mask, p=self.p, train=train, mode=self.dropout_mode)

    def forward(
        self,
        x: torch.Tensor,
        train: bool = False,
        masks: Mapping[str, ArrayLike | torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits (N, classes) for x (N, 3, H, W); ``masks`` {"fc6": (N, D6), "fc7": (N, D7)}."""
        masks = masks or {}
        relu = torch.relu
        h = self.pool(self._lrn(relu(self.conv1(x))))
        h = self.pool(self._lrn(relu(self.conv2(h))))
        h = relu(self.conv3(h))
        h = relu(self.conv4(h))
        h = relu(self.conv5(h))
        if self.head_kind == "gap":
            return nn.functional.adaptive_avg_pool2d(self.head(h), 1).flatten(1)
        h = self.pool(h)
        h = torch.flatten(h, 1)  # (N, C*H*W)
        h = self._dropout(relu(self.fc6(h)), masks.get("fc6"), train)
        h = self._dropout(relu(self.fc7(h)), masks.get("fc7"), train)
        return self.fc8(h)

    def loss_and_grad(
        self,
        x: numpy.ndarray,
        labels: ArrayLike,
        train: bool = True,
        masks: Mapping[str, ArrayLike | torch.Tensor] | None = None,
    ) -> tuple[numpy.ndarray, numpy.ndarray, dict[str, numpy.ndarray]]:
        """(loss, logits, {param name: gradient}) as NumPy, mean cross-entropy over the batch."""
        self.zero_grad(set_to_none=True)
        logits = self.forward(tensor(x), train=train, masks=masks)
        loss = nn.functional.cross_entropy(
            logits, torch.from_numpy(numpy.asarray(labels, dtype=numpy.int64))
        )
        loss.backward()
        grads = {name: p.grad.detach().numpy().copy() for name, p in self.named_parameters()}  # type: ignore[union-attr]  # backward gave each one
        return loss.detach().numpy(), logits.detach().numpy(), grads

    def numpy_state(self) -> dict[str, numpy.ndarray]:
        """The parameters as ``{name: NumPy array}`` copies."""
        return {name: p.detach().numpy().copy() for name, p in self.named_parameters()}
