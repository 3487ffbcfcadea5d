"""The two sides timed against each other: refnet's network and its PyTorch twin.

Each side holds its network, an SGD optimizer, one batch of inputs and labels, and
offers ``step()`` (forward, backward and the SGD update of one training step),
``forward()`` (eval mode) and ``sync()`` (wait for the device). The twin is built from
refnet's weights and reads the same batch; its dropout masks are drawn once, so every
timed step does the same work.

torch is imported lazily (``load_torch``), so the bench runs without it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy

from refnet import SGD, build_network
from refnet.layers import backend
from refnet.options import NetOptions


def load_torch() -> ModuleType | None:
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_device(options: NetOptions) -> str:
    """PyTorch's device for a network's ``NetOptions``: "cuda" for CuPy, else "cpu"."""
    return "cuda" if options.backend == "cupy" else "cpu"


class RefnetSide:
    """The network ``options`` (a ``NetOptions``) describes, with the paper's init from
    ``seed``, SGD, and a random batch of ``batch`` images and labels."""

    def __init__(self, options: NetOptions, batch: int, seed: int = 0) -> None:
        self.net = build_network(options).init(seed)
        self.xp = self.net.xp
        self.opt = SGD(self.net, lr=1e-4)
        rng = numpy.random.default_rng(seed)
        s = options.spec.input_size
        self.x = self.xp.asarray(rng.standard_normal((batch, 3, s, s)).astype(options.dtype))
        self.labels = rng.integers(0, self.net.num_classes, batch)
        self.rng = numpy.random.default_rng(seed + 1)

    def step(self) -> None:
        _, grads = self.net.loss_and_grad_columns(self.x, self.labels, train=True, rng=self.rng)
        self.opt.step(grads)

    def forward(self) -> None:
        self.net.forward(self.x, train=False)

    def sync(self) -> None:
        cupy = backend.cupy_module()
        if cupy is not None and self.xp is cupy:
            cupy.cuda.Device().synchronize()


class TorchSide:
    """The PyTorch twin (``verify.network.twin_of``) of ``refnet_side``'s network, with
    its weights and batch, on the matching device (``torch_device``); SGD with the
    paper's momentum and weight decay."""

    def __init__(self, torch: Any, refnet_side: RefnetSide) -> None:
        from refnet.verify.network import twin_of

        net = refnet_side.net
        opts = net.options
        self.torch = torch
        self.device = device = torch_device(opts)
        self.model = twin_of(opts, net.state_dict()).to(device)
        self.opt = torch.optim.SGD(
            self.model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4
        )
        x = backend.asnumpy(refnet_side.x)
        self.x = torch.from_numpy(x).to(device)
        self.labels = torch.from_numpy(numpy.asarray(refnet_side.labels)).to(device)
        n = x.shape[0]
        rng = numpy.random.default_rng(2)
        self.masks = {
            name: torch.from_numpy(
                rng.random((n, net.shapes[f"{name}.bias"][0])) >= opts.dropout
            ).to(device)
            for name in ("fc6", "fc7")
        }

    def step(self) -> None:
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(self.x, train=True, masks=self.masks)
        torch.nn.functional.cross_entropy(logits, self.labels).backward()
        self.opt.step()

    def forward(self) -> None:
        with self.torch.no_grad():
            self.model(self.x, train=False)

    def sync(self) -> None:
        if self.device != "cpu":
            self.torch.cuda.synchronize()
