"""The two sides timed against each other: refnet's network and its PyTorch twin.

Each side holds its network, an SGD optimizer, one batch of inputs and labels, and
offers ``step()`` (forward, backward and the SGD update of one training step),
``forward()`` (eval mode) and ``sync()`` (wait for the device). The twin is built from
refnet's weights and reads the same batch; its dropout masks are drawn once, so every
timed step does the same work.

torch is imported lazily (``load_torch``), so the bench runs without it.
"""

import numpy

from layers import backend
from refnet.network import AlexNet
from refnet.sgd import SGD


def load_torch():
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_device(device):
    """PyTorch's device for the bench's --device: "cuda" for "gpu", else "cpu"."""
    return "cuda" if device == "gpu" else "cpu"


class RefnetSide:
    """refnet's network (paper init from ``seed``), SGD, and a random batch of ``batch``."""

    def __init__(self, arch, batch, dtype, backend_name, seed=0, conv_cache="columns",
                 conv_algo="winograd"):
        self.net = AlexNet(arch, dtype, backend_name, conv_cache=conv_cache,
                           conv_algo=conv_algo).init(seed)
        self.xp = self.net.xp
        self.opt = SGD(self.net, lr=1e-4)
        rng = numpy.random.default_rng(seed)
        s = self.net.spec.input_size
        self.x = self.xp.asarray(rng.standard_normal((batch, 3, s, s)).astype(dtype))
        self.labels = rng.integers(0, self.net.num_classes, batch)
        self.rng = numpy.random.default_rng(seed + 1)

    def step(self):
        _, grads = self.net.loss_and_grad_columns(self.x, self.labels, train=True,
                                                  rng=self.rng)
        self.opt.step(grads)

    def forward(self):
        self.net.forward(self.x, train=False)

    def sync(self):
        cupy = backend.cupy_module()
        if cupy is not None and self.xp is cupy:
            cupy.cuda.Device().synchronize()


class TorchSide:
    """The PyTorch twin of ``refnet_side``'s network, with its weights and batch, on
    ``device`` ("cpu" or "cuda"); SGD with the paper's momentum and weight decay."""

    def __init__(self, torch, refnet_side, device):
        from verify.twin_network import TwinAlexNet
        net = refnet_side.net
        geometry = [(c.stride, c.pad) for c in net.spec.convs]
        self.torch = torch
        self.device = device
        self.model = TwinAlexNet(net.state_dict(), geometry, pool=net.pool).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-4, momentum=0.9,
                                   weight_decay=5e-4)
        x = backend.asnumpy(refnet_side.x)
        self.x = torch.from_numpy(x).to(device)
        self.labels = torch.from_numpy(numpy.asarray(refnet_side.labels)).to(device)
        n = x.shape[0]
        rng = numpy.random.default_rng(2)
        self.masks = {name: torch.from_numpy(rng.random((n, net.shapes[f"{name}.bias"][0]))
                                             >= net.dropout).to(device)
                      for name in ("fc6", "fc7")}

    def step(self):
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(self.x, train=True, masks=self.masks)
        torch.nn.functional.cross_entropy(logits, self.labels).backward()
        self.opt.step()

    def forward(self):
        with self.torch.no_grad():
            self.model(self.x, train=False)

    def sync(self):
        if self.device != "cpu":
            self.torch.cuda.synchronize()


def backend_name(device):
    return "cupy" if device == "gpu" else "numpy"
