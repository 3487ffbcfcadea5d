"""ZFNet (Zeiler & Fergus 2013, arXiv 1311.2901): sizes, parameter counts from their table,
one column only, and one forward/backward step at the real size.
"""

import math

import numpy
import pytest

from refnet import ARCHS, AlexNet, NetOptions, param_shapes
from refnet.config import UsageError, build_parser, resolve
from refnet.layers.conv import ConvCache
from refnet.nodes import Pass


def test_zfnet_keeps_their_pooled_sizes():
    # their figure: 224 -> 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6 with ceil-rounded
    # pooling; ours rounds down, so conv1 and conv2 are one row larger (refnet.arch)
    for name in ("zfnet", "zfnet-wide"):
        spec = ARCHS[name]
        assert spec.sizes() == {
            "conv1": 111,
            "pool1": 55,
            "conv2": 27,
            "pool2": 13,
            "conv3": 13,
            "conv4": 13,
            "conv5": 13,
            "pool5": 6,
        }
        assert (spec.store_size, spec.crop_size) == (256, 225)
        assert spec.fc6_inputs() == spec.convs[4].width * 6 * 6


def test_zfnet_parameter_count_from_the_published_table():
    # weights (out * in * k * k) + biases (out), ungrouped, from their Fig. 3
    by_hand = {
        "conv1": 96 * 3 * 7 * 7 + 96,  # 14,208
        "conv2": 256 * 96 * 5 * 5 + 256,  # 614,656
        "conv3": 384 * 256 * 3 * 3 + 384,  # 885,120
        "conv4": 384 * 384 * 3 * 3 + 384,  # 1,327,488
        "conv5": 256 * 384 * 3 * 3 + 256,  # 884,992
        "fc6": 4096 * (256 * 6 * 6) + 4096,  # 37,752,832
        "fc7": 4096 * 4096 + 4096,  # 16,781,312
        "fc8": 1000 * 4096 + 1000,  # 4,097,000
    }
    net = AlexNet("zfnet")
    assert net.columns == 1
    assert net.param_counts() == by_hand
    assert net.num_params() == sum(by_hand.values()) == 62_357_608


def test_zfnet_wide_parameter_count():
    # their larger model: conv3/4/5 of 512/1024/512 maps
    by_hand = (
        (96 * 3 * 49 + 96)
        + (256 * 96 * 25 + 256)
        + (512 * 256 * 9 + 512)
        + (1024 * 512 * 9 + 1024)
        + (512 * 1024 * 9 + 512)
        + (4096 * 512 * 36 + 4096)
        + (4096 * 4096 + 4096)
        + (1000 * 4096 + 1000)
    )
    assert AlexNet("zfnet-wide").num_params() == by_hand == 107_627_624


def test_zfnet_is_one_column():
    assert NetOptions(arch="zfnet").columns == 1
    assert NetOptions().columns == 2  # AlexNet's default unchanged
    with pytest.raises(ValueError, match="zfnet.*allows columns"):
        NetOptions(arch="zfnet", columns=2)
    with pytest.raises(ValueError, match="allows columns"):
        param_shapes("zfnet", columns=2)
    cfg, _ = resolve(build_parser().parse_args(["--arch", "zfnet"]))
    assert cfg["columns"] == 1
    with pytest.raises(UsageError, match="--columns 2"):
        resolve(build_parser().parse_args(["--arch", "zfnet", "--columns", "2"]))


def test_zfnet_trains_one_step_at_full_size():
    """Forward and backward on random 225x225 input: conv2 (stride 2) runs by im2col +
    GEMM, the stride-1 conv3-5 by Winograd; the gradients are finite and every
    parameter receives one."""
    rng = numpy.random.default_rng(0)
    net = AlexNet("zfnet", "float32").init(seed=0, scheme="he")
    x = rng.standard_normal((2, 3, 225, 225)).astype(numpy.float32)
    _, caches = net._forward(x, Pass(train=True, rng=rng, masks=None, keep=True))
    assert isinstance(caches["conv1"][0], ConvCache)
    assert isinstance(caches["conv2"][0], ConvCache)  # stride 2: not Winograd
    assert not isinstance(caches["conv3"][0], ConvCache)  # stride 1: Winograd
    del caches
    loss, grads = net.loss_and_grad(x, numpy.array([3, 999]), rng=rng)
    assert numpy.isfinite(loss)
    assert set(grads) == set(param_shapes("zfnet", columns=1))
    for name, g in grads.items():
        assert g.shape == net.shapes[name] and numpy.all(numpy.isfinite(g)), name
        assert numpy.any(g != 0), name
    assert math.isclose(loss, math.log(1000), rel_tol=0.5)
