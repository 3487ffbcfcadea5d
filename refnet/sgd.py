"""Stochastic gradient descent with momentum and weight decay: the paper's rule, or PyTorch's.

With learning rate eps, momentum m, weight decay lambda, gradient g of the mean batch loss:

- ``form="paper"`` (the paper's section 5, and cuda-convnet2):
      v <- m v - lambda eps w - eps g;      w <- w + v
- ``form="pytorch"`` (``torch.optim.SGD`` with momentum, dampening 0, no Nesterov):
      v <- m v + (g + lambda w);            w <- w - eps v
  (PyTorch's first step sets v = g + lambda w, which is the same with v starting at 0.)

Both keep velocities starting at zero. With eps constant they give the same weights
(the paper's v is -eps times PyTorch's); right after eps changes they differ: the paper's
velocity carries the old eps, PyTorch's is rescaled by the new one.

Weight decay applies to weights only unless ``decay_biases=True``: the authors'
cuda-convnet2 configs set ``wcBias=0`` (the paper's formula names only w). Updates run in
place on each column's shards, on that column's device, from per-column gradients
(``AlexNet.loss_and_grad_columns``) or a full gradient dict (``loss_and_grad``). The
plain engine (``engine="plain"``) takes the plain update, ``layers.plain.sgd_update``, a
whole array at a time; the fast one the same operations in place, in blocks of rows
(``refnet.sgd_blocks``). Saving and loading the velocities: ``refnet.sgd_state``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy

from refnet import sgd_blocks
from refnet.layers import plain
from refnet.layers.backend import Array
from refnet.sgd_state import SGDState

if TYPE_CHECKING:
    from refnet.network import AlexNet

FORMS = ("paper", "pytorch")


class SGD(SGDState):
    """SGD over an ``AlexNet``'s parameters; ``lr`` may be changed between steps."""

    def __init__(
        self,
        net: AlexNet,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        form: str = "paper",
        decay_biases: bool = False,
    ) -> None:
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if not numpy.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self.net = net
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.form = form
        self.decay_biases = bool(decay_biases)
        self.velocity = []  # velocity[c]: {name: array like net.params[c][name]}
        xp = net.xp
        for c, params in enumerate(net.params):
            with net.placement.device(c):
                self.velocity.append({n: xp.zeros_like(w) for n, w in params.items()})

    def decay(self, name: str) -> float:
        """The weight decay applied to parameter ``name``."""
        return self.weight_decay if (name.endswith(".weight") or self.decay_biases) else 0.0

    def step(self, grads: list[dict[str, Array]] | dict[str, Array]) -> None:
        """One update from ``grads``: per-column dicts (a list, as
        ``loss_and_grad_columns`` gives) or one dict keyed like ``state_dict``. Every
        gradient is checked before any parameter changes; the columns update concurrently
        on the CPU (``Placement.each``), each under its device."""
        if isinstance(grads, dict):
            grads = self.net.column_grads(grads)
        if len(grads) != len(self.net.params):
            raise ValueError(
                f"expected gradients for {len(self.net.params)} columns, got {len(grads)}"
            )
        for c, params in enumerate(self.net.params):
            for name, w in params.items():
                if name not in grads[c]:
                    raise ValueError(f"column {c}: no gradient for {name!r}")
                g = grads[c][name]
                if tuple(g.shape) != tuple(w.shape):
                    raise ValueError(
                        f"column {c}: gradient of {name!r} has shape "
                        f"{tuple(g.shape)}, parameter {tuple(w.shape)}"
                    )
        self.net.placement.each(self._update_column, self.net.params, grads)

    def _update_column(self, c: int, params: dict[str, Array], grads: Mapping[str, Array]) -> None:
        lr, m = self.lr, self.momentum
        if self.net.options.engine == "plain":
            for name, w in params.items():
                v = self.velocity[c][name]
                w[...], v[...] = plain.sgd_update(
                    w,
                    v,
                    grads[name],
                    lr=lr,
                    momentum=m,
                    weight_decay=self.decay(name),
                    form=self.form,
                )
            return
        for name, w in params.items():  # the fast engine: in place, in blocks of rows
            g, v, wd = grads[name], self.velocity[c][name], self.decay(name)
            sgd_blocks.update_in_blocks(self.net.xp, w, v, g, lr, m, wd, self.form)
