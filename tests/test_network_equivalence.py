"""The two-column network equals the grouped single-device network, forward and backward.

The reference, ``tests/grouped_network.py``, is written independently of the network's
columns and exchanges, directly from layer calls. Everything in float64; agreement to
round-off (a sum split over two columns adds in another order, so the tolerance is
relative to each array's magnitude).
"""

import numpy
import pytest

from refnet import AlexNet
from refnet.nodes import Pass
from tests.grouped_network import (
    TINY_AVGPOOL,
    assert_close,
    grouped_loss_and_grad,
    random_batch,
    random_state,
)

CONFIGS = [
    dict(),
    dict(lrn_mode="all"),
    dict(lrn=False, pool=(2, 2)),
    dict(dropout_mode="inverted", dropout=0.3),
    dict(columns=1),
    dict(columns=1, lrn_mode="all", dropout=0.0),
    dict(layout="NCHW"),  # the default is CHWN (batch innermost)
    dict(layout="NCHW", lrn_mode="all"),
    dict(layout="NCHW", columns=1, conv_algo="gemm"),
    dict(head="gap"),  # 1x1 conv on column 0 + global average pool
    dict(head="gap", columns=1, lrn_mode="all"),
    dict(head="gap", layout="NCHW", conv_algo="gemm"),
    dict(dropout_placement="before", dropout_mode="inverted"),  # torchvision's placement
    dict(dropout_placement="before", columns=1, layout="NCHW"),
    dict(arch="tiny-avgpool"),  # pool5's 2x2 maps averaged up to 3x3
    dict(arch="tiny-avgpool", layout="NCHW", dropout_placement="before"),
]


@pytest.mark.parametrize("options", CONFIGS, ids=[str(c) or "paper" for c in CONFIGS])
def test_columns_equal_grouped_single_device(options):
    rng = numpy.random.default_rng(7)
    options = dict(options)
    arch = TINY_AVGPOOL if options.pop("arch", "tiny") == "tiny-avgpool" else "tiny"
    net = AlexNet(arch, "float64", **options)
    sd = random_state(net, rng)
    net.load_state_dict(sd)
    x, labels, masks = random_batch(net, rng)
    ref_logits, ref_loss, ref_grads, _, _ = grouped_loss_and_grad(net, sd, x, labels, masks)
    assert_close(net.forward(x, train=True, masks=masks), ref_logits, "logits")
    loss, grads = net.loss_and_grad(x, labels, train=True, masks=masks)
    assert_close(loss, ref_loss, "loss")
    assert sorted(grads) == sorted(ref_grads)
    for name in ref_grads:
        assert grads[name].dtype == numpy.float64
        assert_close(grads[name], ref_grads[name], name)


def test_columns_equal_grouped_in_eval_mode_and_demo_size():
    """The demo architecture (3x3 pool5 maps, 32 channels per column) in eval mode."""
    rng = numpy.random.default_rng(3)
    net = AlexNet("demo", "float64")
    sd = random_state(net, rng)
    net.load_state_dict(sd)
    x, labels, masks = random_batch(net, rng, n=2)
    ref_logits, ref_loss, ref_grads, _, _ = grouped_loss_and_grad(
        net, sd, x, labels, masks, train=False
    )
    assert_close(net.forward(x), ref_logits, "logits")
    loss, grads = net.loss_and_grad(x, labels, train=False)
    assert_close(loss, ref_loss, "loss")
    for name in ("conv1.weight", "conv3.weight", "fc6.weight", "fc8.bias"):
        assert_close(grads[name], ref_grads[name], name)


def test_lrn_mode_all_changes_the_output():
    """Caffe's all-channel LRN differs from the per-column one near the boundary between
    the columns, so the two modes give different logits from the same weights (the
    switch is live; each mode's exact values are checked against the reference above)."""
    rng = numpy.random.default_rng(5)
    nets = [AlexNet("demo", "float64", lrn_mode=m) for m in ("column", "all")]
    sd = random_state(nets[0], rng)
    for net in nets:
        net.load_state_dict(sd)
    x, _, _ = random_batch(nets[0], rng, n=1)
    a, b = (net.forward(x) for net in nets)
    assert not numpy.allclose(a, b, rtol=1e-6, atol=0)


def test_concurrent_and_sequential_columns_give_identical_results():
    """On the CPU the columns run in two threads (refnet.columns); one after the other
    (``placement.parallel = False``) gives the same numbers bit for bit."""
    rng = numpy.random.default_rng(11)
    x = rng.standard_normal((3, 3, 45, 45))
    labels = numpy.array([0, 3, 4])
    results = []
    for parallel in (True, False):
        net = AlexNet("tiny", "float64", lrn_mode="all").init(seed=4, scheme="he")
        if parallel and not net.placement.parallel:
            pytest.skip("columns run concurrently only with >= 2 cores and threadpoolctl")
        net.placement.parallel = parallel
        loss, grads = net.loss_and_grad(x, labels, rng=numpy.random.default_rng(2))
        results.append((loss, grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_a == loss_b
    for name in grads_a:
        numpy.testing.assert_array_equal(grads_a[name], grads_b[name])


def test_concurrent_columns_use_one_blas_thread_each_and_alone():
    """With the columns in threads every BLAS call of the network runs on one BLAS
    thread, that of a column alone too (fc8 on column 0): a BLAS thread woken by it
    would spin beside the column threads (refnet.columns)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    net = AlexNet("tiny", "float32")
    placement = net.placement
    if not placement.parallel:
        pytest.skip("columns run concurrently only with >= 2 cores and threadpoolctl")

    def blas_threads(c, _):
        return [
            i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"
        ]

    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        assert placement.each(blas_threads, [None, None]) == [[1], [1]]
        assert placement.each(blas_threads, [None]) == [[1]]
        assert blas_threads(0, None) == [2]  # the caller's limit is back after each


def test_conv_cache_input_gives_identical_results():
    rng = numpy.random.default_rng(12)
    x = rng.standard_normal((2, 3, 45, 45))
    labels = numpy.array([1, 2])
    out = []
    for mode in ("columns", "input"):
        net = AlexNet("tiny", "float64", conv_cache=mode).init(seed=5, scheme="he")
        out.append(net.loss_and_grad(x, labels, rng=numpy.random.default_rng(3)))
    assert out[0][0] == out[1][0]
    for name, g in out[0][1].items():
        numpy.testing.assert_array_equal(g, out[1][1][name])


def test_columns_on_one_device_run_conv1_as_one_layer_keeping_only_the_image():
    """Both columns' conv1 read the same image: on one device they run as one
    convolution by blocks (``layers.conv_blocks``), whose cache is the image alone."""
    rng = numpy.random.default_rng(13)
    net = AlexNet("tiny", "float64").init(seed=5, scheme="he")
    x = rng.standard_normal((2, 3, 45, 45))
    _, caches = net._forward(x, Pass(train=False, rng=None, masks=None, keep=True))
    shared = caches["conv1"]
    assert shared.kernels == 2 and shared.cache.w.shape == (4, 3, 3, 3)
    numpy.testing.assert_array_equal(shared.cache.x, x.transpose(1, 2, 3, 0))  # CHWN
    assert caches["conv2"][0].v is not caches["conv2"][1].v
