"""FLOPs of one image through AlexNet, counted from the layer shapes.

A multiply-add is 2 FLOPs. The count is the direct convolution's whatever algorithm
computes it (Winograd does fewer multiplications), so an effective rate above the GEMM
peak means the algorithm saved work.
"""


def step_flops(net):
    """(forward FLOPs, training-step FLOPs) per image of the network ``net``.

    Forward: every conv and fc GEMM. Backward: dW for every layer and dX for every layer
    but conv1 (its input is the image).
    """
    sizes = net.options.spec.sizes(net.options.pool)
    fwd = bwd = 0
    for i in range(1, 6):
        k, cg, kh, kw = net.shapes[f"conv{i}.weight"]
        macs = k * cg * kh * kw * sizes[f"conv{i}"] ** 2
        fwd += 2 * macs
        bwd += 2 * macs * (1 if i == 1 else 2)
    for name in ("fc6", "fc7", "fc8"):
        out, inp = net.shapes[f"{name}.weight"]
        fwd += 2 * out * inp
        bwd += 4 * out * inp
    return fwd, fwd + bwd
