"""The whole two-column network in JAX, written from the paper, with its gradients by
``jax.vjp``: an autodiff independent of both refnet's hand-written backward passes and
PyTorch's.

The paper's topology (docs/paper.md, "The network"), in its single-device grouped form:
each column holds half of every layer's kernels, stacked column 0 then column 1 along the
kernel axis, and a layer that reads only its own column is a convolution with one group
per column. The columns exchange at exactly conv3, fc6, fc7 and fc8, which read both.

    conv1 (the image, groups 1) -> ReLU -> LRN per column -> max pool
    conv2 (own column, groups = columns) -> ReLU -> LRN per column -> max pool
    conv3 (both columns, groups 1) -> ReLU
    conv4 (own column) -> ReLU;  conv5 (own column) -> ReLU -> max pool
    flatten (channel, row, column) -> fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout -> fc8
    loss: softmax cross-entropy, mean over the batch

The group counts above are this module's own statement of the paper (``GROUPS``); the
weight shapes are only checked against them. Options as in ``refnet.NetOptions``:
``lrn_mode="all"`` (Caffe's) runs one LRN over all channels, ``lrn=False`` none,
``dropout_mode`` the scaling, ``pool`` the window and stride, ``pool_rounding`` floor
or Caffe's ceil, ``head="gap"`` ends with
conv5 -> ReLU -> a 1x1 convolution over both columns to the classes -> the mean over
(H, W) instead of pool5 and fc6-fc8. Dropout uses given keep-masks (1 keep, 0 drop) for
fc6's and fc7's outputs, the same ones refnet's run gets.

Axis legend: N batch, C channels, K kernels, H/W height/width, D features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy
from jax import numpy as jnp
from numpy.typing import ArrayLike

from refnet.options import NetOptions
from refnet.verify import jax_twins as layer
from refnet.verify.network import geometry

CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")
FCS = ("fc6", "fc7", "fc8")
GROUPS = {"conv1": 1, "conv2": "columns", "conv3": 1, "conv4": "columns", "conv5": "columns"}


class Spec(NamedTuple):
    """Everything but the weights that fixes the network (hashable: a static jit argument)."""

    geometry: tuple  # five (stride, pad) pairs, conv1..conv5
    columns: int
    lrn: bool
    lrn_groups: int  # columns for lrn_mode "column", 1 for "all"
    lrn_params: tuple  # (size, alpha, beta, k)
    pool: tuple  # (window, stride)
    pool_rounding: str  # "floor" or "ceil"
    dropout: float
    dropout_mode: str
    head: str


def spec_of(opts: NetOptions, geometry: Sequence[Sequence[int]]) -> Spec:
    """The ``Spec`` of a ``refnet.NetOptions`` with five (stride, pad) pairs ``geometry``."""
    p = opts.lrn_params
    return Spec(
        tuple(tuple(g) for g in geometry),
        opts.columns,
        opts.lrn,
        opts.columns if opts.lrn_mode == "column" else 1,
        (p["size"], p["alpha"], p["beta"], p["k"]),
        tuple(opts.pool),
        opts.pool_rounding,
        opts.dropout,
        opts.dropout_mode,
        opts.head,
    )


def groups(name: str, spec: Spec) -> int:
    return spec.columns if GROUPS[name] == "columns" else GROUPS[name]  # type: ignore[return-value]  # a count where not "columns"


def check_shapes(params: Mapping[str, Any], spec: Spec) -> None:
    """``ValueError`` unless every conv weight fits the paper's group count."""
    c_in = 3
    for name in CONVS:
        k, c_per_group = params[f"{name}.weight"].shape[:2]  # (K, C/G, kh, kw)
        if c_per_group * groups(name, spec) != c_in:
            raise ValueError(
                f"jax network: {name}.weight reads {c_per_group} channels per "
                f"group, but {c_in} channels in {groups(name, spec)} group(s)"
            )
        c_in = k


def logits_of(
    params: Mapping[str, Any], x: Any, masks: Mapping[str, Any], spec: Spec, train: Any
) -> Any:
    """Logits (N, classes) of x (N, 3, S, S); ``params`` {PyTorch name: array}; ``masks``
    {"fc6": (N, D6), "fc7": (N, D7)} keep-masks; ``train`` a (traced) boolean."""
    size, alpha, beta, k = spec.lrn_params

    def conv(name: str, h: Any) -> Any:
        stride, pad = spec.geometry[CONVS.index(name)]
        return layer.conv_forward(
            h,
            params[f"{name}.weight"],
            params[f"{name}.bias"],
            stride=stride,
            pad=pad,
            groups=groups(name, spec),
        )

    def lrn(h: Any) -> Any:
        if not spec.lrn:
            return h
        return layer.lrn_forward(h, size=size, alpha=alpha, beta=beta, k=k, groups=spec.lrn_groups)

    def pool(h: Any) -> Any:
        return layer.pool_forward(
            h, size=spec.pool[0], stride=spec.pool[1], rounding=spec.pool_rounding
        )

    def fc(name: str, h: Any) -> Any:
        return layer.linear_forward(h, params[f"{name}.weight"], params[f"{name}.bias"])

    def dropout(name: str, h: Any) -> Any:
        if not spec.dropout:
            return h
        return layer.dropout_forward(
            h, masks[name], p=spec.dropout, train=train, mode=spec.dropout_mode
        )

    relu = layer.relu_forward
    h = pool(lrn(relu(conv("conv1", x))))  # (N, C1, H1, W1)
    h = pool(lrn(relu(conv("conv2", h))))  # (N, C2, H2, W2)
    h = relu(conv("conv3", h))  # exchange: both columns
    h = relu(conv("conv4", h))
    h = relu(conv("conv5", h))  # (N, C5, H5, W5)
    if spec.head == "gap":
        z = layer.conv_forward(h, params["head.weight"], params["head.bias"])  # (N, M, H5, W5)
        # both columns: groups 1
        return layer.gap_forward(z)  # (N, M)
    h = pool(h).reshape(h.shape[0], -1)  # (N, C5*Hp*Wp), channel-major
    h = dropout("fc6", relu(fc("fc6", h)))  # (N, D6), exchange: fc6-fc8
    h = dropout("fc7", relu(fc("fc7", h)))  # (N, D7)  read both columns
    return fc("fc8", h)  # (N, M)


def _loss_logits_grads(
    params: Mapping[str, Any], x: Any, labels: Any, masks: Mapping[str, Any], train: Any, spec: Spec
):
    def loss_and_logits(params: Mapping[str, Any]) -> tuple[Any, Any]:
        z = logits_of(params, x, masks, spec, train)
        return layer.cross_entropy(z, labels), z

    loss, pullback, z = jax.vjp(loss_and_logits, params, has_aux=True)
    (grads,) = pullback(jnp.ones_like(loss))
    return loss, z, grads


# one compilation per network and input shape: eval and train share it (``train`` traced)
_compiled = jax.jit(_loss_logits_grads, static_argnames=("spec",))


class JaxAlexNet:
    """The network in JAX holding a NumPy ``state_dict`` (grouped form, PyTorch names);
    the same ``loss_and_grad`` as ``verify.twin_network.TwinAlexNet``."""

    def __init__(self, state_dict: Mapping[str, ArrayLike], spec: Spec) -> None:
        self.params = {k: jnp.asarray(v) for k, v in state_dict.items()}
        self.spec = spec
        check_shapes(self.params, spec)

    def loss_and_grad(
        self,
        x: ArrayLike,
        labels: ArrayLike,
        train: bool = True,
        masks: Mapping[str, ArrayLike] | None = None,
    ) -> tuple[numpy.ndarray, numpy.ndarray, dict[str, numpy.ndarray]]:
        """(loss, logits, {param name: gradient}) as NumPy, mean cross-entropy over N."""
        x = jnp.asarray(x)
        masks = {
            name: jnp.asarray(masks[name])  # type: ignore[index]  # given for training
            if train
            # (N, D): eval and train
            else jnp.ones((x.shape[0], self.params[f"{name}.weight"].shape[0]), x.dtype)
            for name in self.dropped()
        }  # share one compilation
        labels = jnp.asarray(numpy.asarray(labels, dtype=numpy.int64))
        loss, z, grads = _compiled(
            self.params, x, labels, masks, jnp.asarray(train), spec=self.spec
        )
        return layer.host(loss), layer.host(z), {k: layer.host(g) for k, g in grads.items()}

    def dropped(self) -> tuple[str, ...]:
        """The layers whose outputs dropout sees: fc6 and fc7, or none."""
        return ("fc6", "fc7") if self.spec.head == "fc" and self.spec.dropout else ()


def jax_twin_of(opts: NetOptions, state: Mapping[str, ArrayLike]) -> JaxAlexNet:
    """The JAX network of ``opts`` (a ``refnet.NetOptions``) holding ``state``; the
    signature of ``verify.network.twin_of``. ``ValueError`` for what it does not write:
    the ``owt`` arch's layout (torchvision's names, average pooling, dropout before fc6
    and fc7)."""
    if opts.spec.param_names or opts.spec.avgpool or opts.dropout_placement != "after":
        raise ValueError(
            f"jax network: written for the paper's network, not arch "
            f"{opts.spec.name!r} with dropout_placement="
            f"{opts.dropout_placement!r}"
        )
    return JaxAlexNet(state, spec_of(opts, geometry(opts.arch)))
