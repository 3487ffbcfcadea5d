"""Initial weights, drawn on the host so every backend and placement gets the same numbers.

Schemes (weights W, biases b; the layer's fan-in is its kernel's C_in/groups * kh * kw, or
its number of inputs for a fully-connected layer):

- ``"paper"``: W ~ N(0, 0.01^2) everywhere; b = 1 in conv2, conv4, conv5, fc6 and fc7
  (so their ReLUs start with positive inputs), b = 0 in conv1, conv3 and fc8.
- ``"caffe"``: Caffe's bvlc_alexnet: as the paper but the non-zero biases are 0.1
  ("initialization to 1 gave flat loss") and fc6/fc7 weights have std 0.005.
- ``"cuda-convnet2"``: the authors' two-GPU configuration (cuda-convnet2,
  layers/layers-imagenet-2gpu-model.cfg, ``initW``/``initB``): as the paper but conv3,
  conv4 and conv5 weights have std 0.03.
- ``"pytorch"``: PyTorch's ``nn.Conv2d``/``nn.Linear`` defaults (their
  ``reset_parameters``), torchvision's AlexNet's init: W ~ U(-b, b) and b ~ U(-b, b)
  with b = 1 / sqrt(fan_in) (``kaiming_uniform_(a=sqrt(5))`` gives exactly this bound).
- ``"he"``: W ~ N(0, 2 / fan_in), all biases 0. Not the paper's: at demo scale the paper's
  init stays at chance (docs/paper.md, "At demo scale"), a scaled init trains in minutes.

Every weight is drawn with ``numpy.random.Generator(PCG64(seed))`` in float64, in the
full grouped single-device shape, in the fixed order of ``param_shapes`` (conv1.weight,
conv1.bias, ..., fc8.bias; biases draw nothing except under ``"pytorch"``, where each
bias is drawn right after its weight), then cast to the network's dtype. The
network splits these arrays into columns and moves them to devices afterwards, so the
same seed gives the same weights on NumPy and CuPy, and for two columns and the grouped
single-device form.
"""

from __future__ import annotations

import math

import numpy

from refnet.layers.backend import DTypeLike

SCHEMES = ("paper", "caffe", "cuda-convnet2", "pytorch", "he")

_ONE_BIAS = ("conv2", "conv4", "conv5", "fc6", "fc7")


def fan_in(shape: tuple[int, ...]) -> int:
    """Inputs per output unit of a weight of this shape: prod(shape[1:])."""
    return math.prod(shape[1:])


def weight_std(scheme: str, layer: str, shape: tuple[int, ...]) -> float:
    """The standard deviation of ``layer``'s weights under ``scheme``."""
    if scheme == "paper":
        return 0.01
    if scheme == "caffe":
        return 0.005 if layer in ("fc6", "fc7") else 0.01
    if scheme == "cuda-convnet2":
        return 0.03 if layer in ("conv3", "conv4", "conv5") else 0.01
    if scheme == "pytorch":  # of the uniform U(-b, b): b / sqrt(3)
        return uniform_bound(shape) / math.sqrt(3.0)
    if scheme == "he":
        return float(numpy.sqrt(2.0 / fan_in(shape)))
    raise ValueError(f"init scheme must be one of {SCHEMES}, got {scheme!r}")


def uniform_bound(shape: tuple[int, ...]) -> float:
    """PyTorch's default bound b = 1 / sqrt(fan_in) for a weight of ``shape`` and its bias."""
    return 1.0 / math.sqrt(fan_in(shape))


def bias_value(scheme: str, layer: str) -> float:
    """The constant initial bias of ``layer`` under ``scheme`` (``"pytorch"`` draws its
    biases: ``initial_params``)."""
    if scheme in ("paper", "cuda-convnet2"):
        return 1.0 if layer in _ONE_BIAS else 0.0
    if scheme == "caffe":
        return 0.1 if layer in _ONE_BIAS else 0.0
    if scheme == "he":
        return 0.0
    if scheme == "pytorch":
        raise ValueError(
            "init scheme 'pytorch' draws its biases (initial_params), they have no constant value"
        )
    raise ValueError(f"init scheme must be one of {SCHEMES}, got {scheme!r}")


def initial_params(
    shapes: dict[str, tuple[int, ...]],
    *,
    seed: int = 0,
    scheme: str = "paper",
    dtype: DTypeLike = numpy.float32,
) -> dict[str, numpy.ndarray]:
    """``{name: numpy array}`` for ``shapes`` (``{name: shape}`` in draw order).

    Names are ``<layer>.weight`` / ``<layer>.bias``. Weights are drawn in float64 and
    then cast to ``dtype``; biases are constants.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"init scheme must be one of {SCHEMES}, got {scheme!r}")
    rng = numpy.random.Generator(numpy.random.PCG64(seed))
    out = {}
    for name, shape in shapes.items():
        layer, kind = name.rsplit(".", 1)
        if kind == "weight" and scheme == "pytorch":
            b = uniform_bound(shape)
            out[name] = rng.uniform(-b, b, shape).astype(dtype, copy=False)  # float64 draw
        elif kind == "weight":
            std = weight_std(scheme, layer, shape)
            w = rng.standard_normal(shape)  # float64, shape as the grouped form
            w *= std
            out[name] = w.astype(dtype, copy=False)
        elif kind == "bias" and scheme == "pytorch":
            b = uniform_bound(shapes[f"{layer}.weight"])  # the bound of its weight
            out[name] = rng.uniform(-b, b, shape).astype(dtype, copy=False)
        elif kind == "bias":
            out[name] = numpy.full(shape, bias_value(scheme, layer), dtype=dtype)
        else:
            raise ValueError(f"unknown parameter kind in {name!r}")
    return out
