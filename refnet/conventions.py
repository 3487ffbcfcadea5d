"""Named conventions: the option bundles with which refnet computes what a reference system
computes, as that system's published configuration or source does.

    opts = NetOptions.preset("caffe")                    # refnet.options; a NetOptions
    opts = NetOptions.preset("caffe", arch="demo", lrn_k=2.0)   # given fields win
    net = AlexNet(conventions="caffe"); net.init(seed=0)  # init: the preset's scheme
    python -m refnet.train --conventions caffe            # flags given win

``CONVENTIONS[name]`` maps ``NetOptions`` fields to values, plus ``"init"``, the
``refnet.init`` scheme of ``net.init``. docs/conventions.md has the table behind them,
convention by framework, each cell with its source. LRN's alpha: refnet multiplies the
window sum by ``lrn_alpha`` as it stands (the paper's formula); a system that divides its
alpha A by the window size n is refnet with ``lrn_alpha = A / n``.

- ``"paper"``: Krizhevsky et al. 2012 as refnet reads it: LRN per column after the ReLU
  of layers 1 and 2, n=5, alpha=1e-4, beta=0.75, k=2 (section 3.3); 3/2 max pooling
  (3.4; its rounding is not stated: floor gives the paper's 55 -> 27 -> 13 -> 6); dropout
  0.5 on fc6's and fc7's outputs, x0.5 at test (4.2); N(0, 0.01) weights, biases 1 in
  conv2, conv4, conv5, fc6, fc7 (5).
- ``"cuda-convnet2"``: the authors' two-GPU model (cuda-convnet2,
  layers/layers-imagenet-2gpu-model.cfg and layer-params-imagenet-2gpu-model.cfg):
  ``cmrnorm`` per column, size 5, scale 1e-4 which layer.py divides by the size, pow
  0.75, minDiv (k) 2; pooling rounds up (layer.py's pool outputsX); dropout divides kept
  units by keep=0.5 in training (layer.cuh); conv3-conv5 init std 0.03. Not expressed:
  its LRN in layer 1 acts before the ReLU (conv1 has no neuron; pool1 applies it), an
  extra spatial ``rnorm`` (cnorm2) follows rnorm2, and it crops 224 with conv1 rounding
  up to 55 (refnet's alexnet takes 227: the same maps' sizes).
- ``"caffe"``: Caffe's models/bvlc_alexnet/train_val.prototxt: one LRN over all
  channels (not per group), local_size 5, alpha 1e-4 (divided by the size in
  lrn_layer.cpp), beta 0.75, k unset so 1 (caffe.proto); pooling rounds up (caffe.proto's
  round_mode default CEIL); inverted dropout 0.5; init gaussian 0.01 (fc6/fc7 0.005),
  biases 0.1 where the paper has 1. Its group 2 on conv2/4/5 is the arch's two columns.
- ``"torchvision"``: torchvision's AlexNet (torchvision/models/alexnet.py, the "one weird
  trick" variant): ``arch="owt"`` (one column, 64/192/384/256/256, 224 input, conv1 pad
  2, dropout before fc6 and fc7: the arch's business), no LRN, floor pooling, inverted
  dropout 0.5, PyTorch's default init. Needs the ``owt`` arch: without it ``ValueError``.

The presets leave ``columns`` to the arch (2 for ``alexnet``: the paper's columns,
cuda-convnet2's two GPUs and Caffe's group 2 alike) unless the system has one column.
"""

from __future__ import annotations

from typing import Any

from refnet.arch import ARCHS

_LRN_SIZE = 5

CONVENTIONS: dict[str, dict[str, Any]] = {
    "paper": dict(
        lrn=True,
        lrn_mode="column",
        lrn_size=_LRN_SIZE,
        lrn_alpha=1e-4,
        lrn_beta=0.75,
        lrn_k=2.0,
        pool=(3, 2),
        pool_rounding="floor",
        dropout=0.5,
        dropout_mode="paper",
        init="paper",
    ),
    "cuda-convnet2": dict(
        lrn=True,
        lrn_mode="column",
        lrn_size=_LRN_SIZE,
        lrn_alpha=1e-4 / _LRN_SIZE,
        lrn_beta=0.75,
        lrn_k=2.0,
        pool=(3, 2),
        pool_rounding="ceil",
        dropout=0.5,
        dropout_mode="inverted",
        init="cuda-convnet2",
    ),
    "caffe": dict(
        lrn=True,
        lrn_mode="all",
        lrn_size=_LRN_SIZE,
        lrn_alpha=1e-4 / _LRN_SIZE,
        lrn_beta=0.75,
        lrn_k=1.0,
        pool=(3, 2),
        pool_rounding="ceil",
        dropout=0.5,
        dropout_mode="inverted",
        init="caffe",
    ),
    "torchvision": dict(
        arch="owt",
        columns=1,
        lrn=False,
        pool=(3, 2),
        pool_rounding="floor",
        dropout=0.5,
        dropout_mode="inverted",
        init="pytorch",
    ),
}

NAMES = tuple(CONVENTIONS)


def settings(name: str, *, arch_given: bool = False) -> dict[str, Any]:
    """A copy of ``CONVENTIONS[name]`` (the fields and ``"init"``). ``ValueError`` for an
    unknown name (naming the choices), or when the preset needs an arch this refnet does
    not have and ``arch_given`` is false (an arch given by the caller wins anyway)."""
    if isinstance(name, bool) or name not in CONVENTIONS:
        raise ValueError(f"conventions must be one of {NAMES}, got {name!r}")
    out = dict(CONVENTIONS[name])
    arch = out.get("arch")
    if arch is not None and arch not in ARCHS and not arch_given:
        raise ValueError(
            f"conventions {name!r} need arch {arch!r}, which this refnet does "
            f"not have (archs: {', '.join(ARCHS)}); an arch given "
            f"explicitly takes its place"
        )
    return out


def fields(name: str, *, arch_given: bool = False) -> dict[str, Any]:
    """The ``NetOptions`` fields of preset ``name`` (``settings`` without ``"init"``)."""
    out = settings(name, arch_given=arch_given)
    out.pop("init")
    return out


def init_scheme(name: str) -> str:
    """The ``refnet.init`` scheme of preset ``name``."""
    if isinstance(name, bool) or name not in CONVENTIONS:
        raise ValueError(f"conventions must be one of {NAMES}, got {name!r}")
    return CONVENTIONS[name]["init"]
