"""Named conventions: the option bundles with which refnet computes what a reference system
computes, as that system's published configuration or source does.

    opts = NetOptions.preset("caffe")                    # refnet.options; a NetOptions
    opts = NetOptions.preset("caffe", arch="demo", lrn_k=2.0)   # given fields win
    net = AlexNet(conventions="caffe"); net.init(seed=0)  # init: the preset's scheme
    python -m refnet.train --conventions caffe            # flags given win

``CONVENTIONS[name]`` maps ``NetOptions`` fields to values, plus ``"init"``, the
``refnet.init`` scheme of ``net.init``. LRN's alpha multiplies the window sum as it
stands (the paper's formula); a system that divides its alpha A by the window size n is
``lrn_alpha = A / n``. docs/conventions.md ("Conventions by framework", "Presets") has
each value's source and what a preset does not express.

- ``"paper"`` (Krizhevsky et al. 2012): LRN per column, n=5, alpha=1e-4, beta=0.75, k=2;
  3/2 max pooling rounded down; dropout 0.5 after fc6's and fc7's ReLU, x0.5 at test;
  N(0, 0.01) weights, biases 1 in conv2, conv4, conv5, fc6, fc7.
- ``"cuda-convnet2"`` (the authors' two-GPU model): LRN per column, size 5, alpha
  1e-4 / 5, beta 0.75, k 2; pooling rounded up; inverted dropout 0.5; conv3-conv5 std 0.03.
- ``"caffe"`` (models/bvlc_alexnet): one LRN over all channels, size 5, alpha 1e-4 / 5,
  beta 0.75, k 1; pooling rounded up; inverted dropout 0.5; gaussian 0.01 (fc6, fc7
  0.005), biases 0.1 where the paper has 1.
- ``"torchvision"`` (torchvision's AlexNet): ``arch="owt"`` (else ``ValueError``), no
  LRN, pooling rounded down, inverted dropout 0.5 before fc6 and fc7, PyTorch's init.

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
