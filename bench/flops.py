"""FLOPs of one image through AlexNet: the count of ``refnet.summary``, the one source.

A multiply-add is 2 FLOPs. The count is the direct convolution's whatever algorithm
computes it (Winograd does fewer multiplications), so an effective rate above the GEMM
peak means the algorithm saved work.
"""

from refnet.summary import step_flops

__all__ = ["step_flops"]
