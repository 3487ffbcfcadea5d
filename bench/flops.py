"""FLOPs of one image through AlexNet: the count of ``refnet.summary``, the one source, and
the products that Winograd's algorithm leaves.

A multiply-add is 2 FLOPs. ``step_flops`` counts the direct convolution whatever
algorithm computes it, so an effective rate above the GEMM peak means the algorithm saved
work. ``winograd_step_flops`` counts what the step's matrix products must do when the
stride-1 convolutions run as Winograd's F(m x m, r x r) with the tiles the network picks
(``layers.conv.winograd_tile``): per tile n*n products (n = m + r - 1) for each pair of
input and output channels where the direct form has m*m*r*r, three times per step
(forward, the weights' gradient, the input's); conv1 (stride 4) and the fc layers are
counted direct. It leaves out the transforms, which are memory-bound: that count divided
by the GEMM peak is the least time the step's arithmetic allows.
"""

from __future__ import annotations

import math

from refnet.arch import GROUPED, get_arch
from refnet.layers.conv import winograd_tile
from refnet.summary import step_flops

__all__ = ["step_flops", "winograd_step_flops"]


def winograd_step_flops(
    arch: str, dtype: str = "float32", columns: int = 2, winograd: bool = True
) -> int:
    """FLOPs per image of one training step's products (module doc); ``winograd=False``
    counts every convolution direct (``step_flops``'s count)."""
    spec = get_arch(arch)
    sizes = spec.sizes()
    total, c_in, side = 0, 3, spec.input_size
    for i, conv in enumerate(spec.convs, start=1):
        name = f"conv{i}"
        out = sizes[name]
        cg = c_in // (columns if name in GROUPED else 1)  # input channels each kernel reads
        direct = 2 * out * out * conv.kernel**2 * cg * conv.width
        if winograd and conv.stride == 1:
            m = winograd_tile(conv.kernel, out, out, dtype)
            n = m + conv.kernel - 1
            tiles = math.ceil(out / m) ** 2
            fwd = 2 * tiles * n * n * cg * conv.width
        else:
            fwd = direct
        total += fwd * (2 if i == 1 else 3)  # the image needs no gradient
        c_in, side = conv.width, sizes.get(f"pool{i}", out)
    features = c_in * side * side
    for width in (*spec.fc, spec.num_classes):
        total += 3 * 2 * features * width
        features = width
    return total
