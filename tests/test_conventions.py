"""Named conventions (``refnet.conventions``): each preset gives the options its row of
docs/conventions.md says, and computes what its system computes: Caffe's LRN is
PyTorch's ``local_response_norm`` with Caffe's own numbers (alpha 1e-4, k 1) over all
channels, cuda-convnet2's is its ``cmrnorm`` formula (scale / size, minDiv 2) per column;
whole networks under each preset against a PyTorch forward written here from the
system's literal settings (float64, logits and every gradient, pooling that rounds up on
even sizes). Overrides win, unknown names are refused, the init schemes the presets
name draw what their sources say, and ``--conventions`` reaches the training command."""

import numpy
import pytest

from refnet import AlexNet, NetOptions, conventions, layers
from refnet.arch import ARCHS, ArchSpec, ConvSpec, param_shapes
from refnet.config import UsageError, build_parser, resolve
from refnet.init import initial_params
from refnet.options import CHOICES
from refnet.summary import layer_table

torch = pytest.importorskip("torch")
F = torch.nn.functional

# Even sides, where ceil and floor pooling differ: 44 -> conv1 22 -> pool 10 (floor) or
# 11 (ceil) -> conv2 -> pool 4 or 5 -> conv3-5 -> pool5 1 or 2.
EVEN = ArchSpec(
    name="even",
    input_size=44,
    convs=(
        ConvSpec(3, 2, 1, 8),
        ConvSpec(5, 1, 2, 8),
        ConvSpec(3, 1, 1, 8),
        ConvSpec(3, 1, 1, 8),
        ConvSpec(3, 1, 1, 8),
    ),
    fc=(16, 16),
    num_classes=5,
    store_size=52,
)


def rel(a, b):
    """max|a - b| / max|b| (verify's measure)."""
    a, b = numpy.asarray(a, float), numpy.asarray(b, float)
    return float(numpy.abs(a - b).max() / numpy.abs(b).max())


# -- the table rows ----------------------------------------------------------------------

ROWS = {  # name: (lrn_mode, alpha on the window sum, k, pool rounding, dropout form, init)
    "paper": ("column", 1e-4, 2.0, "floor", "paper", "paper"),
    "cuda-convnet2": ("column", 1e-4 / 5, 2.0, "ceil", "inverted", "cuda-convnet2"),
    "caffe": ("all", 1e-4 / 5, 1.0, "ceil", "inverted", "caffe"),
}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_each_preset_gives_its_table_row(name):
    mode, alpha, k, rounding, dropout_mode, init = ROWS[name]
    opts = NetOptions.preset(name)
    assert (opts.lrn, opts.lrn_mode, opts.lrn_size, opts.lrn_beta) == (True, mode, 5, 0.75)
    assert opts.lrn_alpha == pytest.approx(alpha, rel=1e-15) and opts.lrn_k == k
    assert (opts.pool, opts.pool_rounding) == ((3, 2), rounding)
    assert (opts.dropout, opts.dropout_mode) == (0.5, dropout_mode)
    assert (opts.arch, opts.columns) == ("alexnet", 2)  # the arch's two columns
    assert conventions.init_scheme(name) == init
    net = AlexNet(conventions=name, arch="tiny")
    assert net.options == NetOptions.preset(name, arch="tiny") and net.init_scheme == init


@pytest.mark.skipif("owt" not in ARCHS, reason="the owt arch (torchvision's) is not here")
def test_torchvision_preset_is_the_owt_arch():
    opts = NetOptions.preset("torchvision")
    assert (opts.arch, opts.columns, opts.lrn) == ("owt", 1, False)
    assert (opts.pool, opts.pool_rounding) == ((3, 2), "floor")
    assert (opts.dropout, opts.dropout_mode) == (0.5, "inverted")
    net = AlexNet(conventions="torchvision", dtype="float64").init(seed=0)
    assert net.init_scheme == "pytorch" and net.spec.name == "owt"


@pytest.mark.skipif("owt" in ARCHS, reason="the owt arch is here")
def test_torchvision_preset_without_its_arch_is_refused_clearly():
    with pytest.raises(ValueError, match="'torchvision' need arch 'owt'"):
        NetOptions.preset("torchvision")
    with pytest.raises(ValueError, match="need arch 'owt'"):
        AlexNet(conventions="torchvision")
    opts = NetOptions.preset("torchvision", arch="alexnet")  # its other conventions
    assert (opts.columns, opts.lrn, opts.dropout_mode) == (1, False, "inverted")


def test_given_fields_win_over_the_preset():
    opts = NetOptions.preset(
        "caffe", arch="demo", lrn_k=2.0, pool_rounding="floor", dtype="float64"
    )
    assert (opts.arch, opts.lrn_k, opts.pool_rounding, opts.dtype) == (
        "demo",
        2.0,
        "floor",
        "float64",
    )
    assert (opts.lrn_mode, opts.dropout_mode) == ("all", "inverted")  # the rest: Caffe's
    net = AlexNet("tiny", "float64", conventions="caffe", lrn_mode="column")
    assert net.options.lrn_mode == "column" and net.options.lrn_k == 1.0
    net.init(seed=0)  # the preset's scheme: Caffe's 0.1
    assert float(net.state_dict()["conv2.bias"][0]) == pytest.approx(0.1)
    net.init(seed=0, scheme="he")  # a scheme given wins
    assert float(net.state_dict()["conv2.bias"][0]) == 0.0
    assert AlexNet("tiny").init_scheme == "paper"  # no preset: the paper's


def test_unknown_names_are_refused_naming_the_choices():
    for bad in ("tensorflow", "Caffe", None, True):
        with pytest.raises(ValueError) as err:
            NetOptions.preset(bad)
        assert repr(bad) in str(err.value)
        assert all(repr(name) in str(err.value) for name in conventions.CONVENTIONS)
    with pytest.raises(ValueError, match="conventions must be one of"):
        AlexNet(conventions="onnx")
    assert CHOICES["conventions"] == tuple(conventions.CONVENTIONS)


# -- LRN: each system's formula with its own numbers ------------------------------------


def test_caffe_lrn_is_torch_local_response_norm_with_caffes_numbers():
    # post-ReLU maps of pixel scale (the alpha term comparable with k), all 96 channels
    rng = numpy.random.default_rng(1)
    x = numpy.abs(rng.standard_normal((2, 96, 5, 4))) * 60
    opts = NetOptions.preset("caffe", dtype="float64")
    y, _ = layers.lrn.forward(x, **opts.lrn_params)
    caffe = F.local_response_norm(torch.from_numpy(x), 5, alpha=1e-4, beta=0.75, k=1.0)
    assert rel(y, caffe.numpy()) < 1e-13
    # the paper's numbers taken literally by PyTorch would differ by far more
    paper = F.local_response_norm(torch.from_numpy(x), 5, alpha=1e-4 * 5, beta=0.75, k=2.0)
    assert rel(y, paper.numpy()) > 0.1


def cmrnorm(a, size, scale, pow_, min_div):
    """cuda-convnet2's cross-map response norm on one column (N, C, H, W), as its kernel
    (cudaconv3/src/conv_util.cu) sums: channels c - size//2 .. c - size//2 + size - 1
    clipped to [0, C), ``min_div + (scale / size) * sum``, layer.py dividing the scale."""
    out = numpy.empty_like(a)
    C = a.shape[1]
    for c in range(C):
        lo, hi = max(0, c - size // 2), min(C, c - size // 2 + size)
        denom = min_div + (scale / size) * (a[:, lo:hi] ** 2).sum(axis=1)
        out[:, c] = a[:, c] * denom**-pow_
    return out


def test_cuda_convnet2_lrn_is_cmrnorm_with_scale_over_size():
    rng = numpy.random.default_rng(2)
    x = numpy.abs(rng.standard_normal((2, 48, 4, 3))) * 80  # one column's 48 maps
    opts = NetOptions.preset("cuda-convnet2", dtype="float64")
    y, _ = layers.lrn.forward(x, **opts.lrn_params)
    # layer-params-imagenet-2gpu-model.cfg: rnorm1a scale=0.0001 pow=0.75 minDiv=2, size=5
    expected = cmrnorm(x, 5, 1e-4, 0.75, 2.0)
    assert rel(y, expected) < 1e-13
    assert rel(cmrnorm(x, 5, 1e-4 * 5, 0.75, 2.0), expected) > 0.1  # the scale matters


# -- whole networks against PyTorch with each system's literal settings -----------------


def random_state(shapes, rng):
    """Weights that keep activations at pixel scale (|h| ~ 50-100, LRN's alpha term
    comparable with k); biases random so every term counts."""
    state = {}
    for name, shape in shapes.items():
        if name.endswith(".weight"):
            std = 0.3 if name == "conv1.weight" else 1.2 / numpy.sqrt(numpy.prod(shape[1:]))
            state[name] = rng.standard_normal(shape) * std
        else:
            state[name] = rng.standard_normal(shape)
    return state


def torch_logits(state, spec, *, lrn_groups, alpha, k, ceil, test_scale, x):
    """The network in PyTorch ops from the system's own settings: ``alpha`` as PyTorch
    takes it (divided by n inside), LRN over ``lrn_groups`` channel groups, max pooling
    with ``ceil_mode=ceil``, dropout's test-time scale ``test_scale`` on fc6/fc7."""
    t = {n: torch.tensor(v, requires_grad=True) for n, v in state.items()}

    def lrn(h):
        return torch.cat(
            [
                F.local_response_norm(g, 5, alpha=alpha, beta=0.75, k=k)
                for g in h.chunk(lrn_groups, dim=1)
            ],
            dim=1,
        )

    h, c_in = torch.from_numpy(x), 3
    for i, conv in enumerate(spec.convs, start=1):
        w = t[f"conv{i}.weight"]
        h = torch.relu(
            F.conv2d(
                h,
                w,
                t[f"conv{i}.bias"],
                stride=conv.stride,
                padding=conv.pad,
                groups=c_in // w.shape[1],
            )
        )
        c_in = w.shape[0]
        if i in (1, 2):
            h = lrn(h)
        if i in (1, 2, 5):
            h = F.max_pool2d(h, 3, 2, ceil_mode=ceil)
    h = torch.flatten(h, 1)
    for name in ("fc6", "fc7"):
        h = torch.relu(F.linear(h, t[f"{name}.weight"], t[f"{name}.bias"])) * test_scale
    return F.linear(h, t["fc8.weight"], t["fc8.bias"]), t


@pytest.mark.parametrize(
    "name, lrn_groups, alpha, k, ceil, test_scale",
    [
        ("caffe", 1, 1e-4, 1.0, True, 1.0),  # train_val.prototxt's numbers
        ("cuda-convnet2", 2, 1e-4, 2.0, True, 1.0),  # rnorm1a/b: scale 1e-4, minDiv 2
        ("paper", 2, 1e-4 * 5, 2.0, False, 0.5),  # the paper's alpha, times n for torch
    ],
)
def test_preset_network_equals_its_system_in_torch(name, lrn_groups, alpha, k, ceil, test_scale):
    net = AlexNet(EVEN, "float64", conventions=name, conv_algo="gemm")
    sizes = EVEN.sizes(rounding="ceil" if ceil else "floor")
    assert net.shapes["fc6.weight"][1] == 8 * sizes["pool5"] ** 2
    rng = numpy.random.default_rng(3)
    state = random_state(net.shapes, rng)
    net.load_state_dict(state)
    x = rng.standard_normal((3, 3, 44, 44)) * 50
    labels = rng.integers(0, 5, size=3)
    loss, grads = net.loss_and_grad(x, labels, train=False)
    logits, t = torch_logits(
        state, EVEN, lrn_groups=lrn_groups, alpha=alpha, k=k, ceil=ceil, test_scale=test_scale, x=x
    )
    t_loss = F.cross_entropy(logits, torch.from_numpy(labels))
    t_loss.backward()
    assert rel(net.forward(x), logits.detach().numpy()) < 1e-10
    assert abs(loss - t_loss.item()) <= 1e-10 * abs(t_loss.item())
    for key, g in grads.items():
        assert rel(g, t[key].grad.numpy()) < 1e-10, key
    # the summary's pooled shapes follow the rounding too
    pools = [r.shape for r in layer_table(net) if r.kind == "Pool"]
    assert [p[1] for p in pools] == [sizes["pool1"], sizes["pool2"], sizes["pool5"]]


def test_ceil_rounding_changes_the_shapes_only_where_sides_are_even():
    alexnet = ARCHS["alexnet"]
    assert alexnet.sizes(rounding="ceil") == alexnet.sizes()  # 55/27/13 -> 6
    assert param_shapes(alexnet, pool_rounding="ceil") == param_shapes(alexnet)
    assert EVEN.sizes()["pool5"] == 1 and EVEN.sizes(rounding="ceil")["pool5"] == 2


# -- the init schemes the presets name ---------------------------------------------------


def test_pytorch_scheme_draws_pytorchs_default_bounds():
    shapes = param_shapes(ARCHS["demo"])
    params = initial_params(shapes, seed=0, scheme="pytorch", dtype=numpy.float64)
    # torch's own layers of the same shapes (grouped conv2) bound their draws the same
    modules = {
        "conv2": torch.nn.Conv2d(24, 64, 5, groups=2, dtype=torch.float64),
        "fc6": torch.nn.Linear(shapes["fc6.weight"][1], 512, dtype=torch.float64),
    }
    for layer, module in modules.items():
        w, b = params[f"{layer}.weight"], params[f"{layer}.bias"]
        bound = max(numpy.abs(w).max(), numpy.abs(b).max())
        torch_bound = float(module.weight.detach().abs().max())
        assert bound <= 1 / numpy.sqrt(numpy.prod(w.shape[1:]))
        assert torch_bound == pytest.approx(bound, rel=2e-3), layer
        assert w.std() == pytest.approx(bound / numpy.sqrt(3), rel=0.02)
    assert len(numpy.unique(params["fc6.bias"])) == 512  # biases are drawn


def test_cuda_convnet2_scheme_is_its_initw_and_initb():
    shapes = param_shapes(ARCHS["demo"])
    params = initial_params(shapes, seed=1, scheme="cuda-convnet2", dtype=numpy.float64)
    stds = {
        "conv1": 0.01,
        "conv2": 0.01,
        "conv3": 0.03,
        "conv4": 0.03,
        "conv5": 0.03,
        "fc6": 0.01,
        "fc7": 0.01,
        "fc8": 0.01,
    }
    biases = {
        "conv1": 0,
        "conv2": 1,
        "conv3": 0,
        "conv4": 1,
        "conv5": 1,
        "fc6": 1,
        "fc7": 1,
        "fc8": 0,
    }
    for layer, std in stds.items():
        assert params[f"{layer}.weight"].std() == pytest.approx(std, rel=0.1), layer
        assert set(numpy.unique(params[f"{layer}.bias"])) == {biases[layer]}, layer


# -- the training command ----------------------------------------------------------------


def test_train_flag_applies_the_preset_and_given_flags_win():
    parser = build_parser()
    actions = {a.dest: a for a in parser._actions}
    for name in ("conventions", "pool_rounding"):
        assert tuple(actions[name].choices) == CHOICES[name]
    cfg, _ = resolve(parser.parse_args(["--conventions", "caffe", "--lrn-mode", "column"]))
    opts = NetOptions.from_config(cfg)
    assert opts == NetOptions.preset(
        "caffe",
        arch="demo",
        lrn_mode="column",
        columns=2,
        conv_algo=opts.conv_algo,
        backend=opts.backend,
    )
    assert cfg["init"] == "caffe"
    cfg, _ = resolve(parser.parse_args(["--conventions", "cuda-convnet2", "--init", "he"]))
    assert (cfg["init"], cfg["pool_rounding"]) == ("he", "ceil")
    with pytest.raises(SystemExit):
        parser.parse_args(["--conventions", "tensorflow"])
    if "owt" not in ARCHS:
        with pytest.raises(UsageError, match="need arch 'owt'"):
            resolve(parser.parse_args(["--conventions", "torchvision"]))
