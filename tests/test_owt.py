"""The ``owt`` arch against torchvision's own AlexNet class (``torchvision.models.alexnet``,
loaded by ``verify.torchvision_model``, also beside a CPU torch), in float64: its names,
logits, loss and every gradient, dropout's placement and scaling with shared masks; its
state_dict loads as is, also from a ``.pth`` read by ``torch.load(weights_only=True)``;
and the arch trains, evaluates and predicts from its own images like the paper's."""

import copy
import json
import os
import subprocess
import sys

import numpy
import pytest

from refnet import AlexNet, NetOptions
from refnet.verify.pth import load_pth, read_pth
from tests.own_images import write_image_tree

torch = pytest.importorskip("torch")

TOL = 1e-10  # whole network in float64, relative to the largest value (verify's)


@pytest.fixture(scope="module")
def torchvision():
    from refnet.verify.torchvision_model import torchvision_alexnet

    try:
        module, _ = torchvision_alexnet()
    except ImportError as e:
        pytest.skip(str(e))
    return module


def rel(a, b):
    a, b = numpy.asarray(a), numpy.asarray(b)
    return float(numpy.max(numpy.abs(a - b)) / numpy.max(numpy.abs(b)))


def numpy_state(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def theirs(torchvision, seed, **kwargs):
    """torchvision's AlexNet in float64 with PyTorch's default init from ``seed``."""
    torch.manual_seed(seed)
    return torchvision.alexnet(weights=None, **kwargs).double()


@pytest.fixture(scope="module")
def model(torchvision):
    """One torchvision AlexNet for the module (its init takes seconds): copy to change."""
    return theirs(torchvision, 0)


def torch_loss_and_grads(model, x, labels):
    model.zero_grad()
    logits = model(torch.from_numpy(x))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
    loss.backward()
    return (
        loss.item(),
        logits.detach().numpy(),
        {k: p.grad.numpy() for k, p in model.named_parameters()},
    )


def batch(seed, classes=1000):
    rng = numpy.random.default_rng(seed)
    return rng.standard_normal((2, 3, 224, 224)), rng.integers(0, classes, size=2)


def test_options_default_to_torchvisions_form_and_explicit_ones_win():
    opts = NetOptions(arch="owt")
    assert (opts.columns, opts.lrn, opts.dropout_mode, opts.dropout_placement) == (
        1,
        False,
        "inverted",
        "before",
    )
    assert NetOptions(arch="alexnet").dropout_placement == "after"
    with pytest.raises(ValueError, match="'owt' allows columns"):
        NetOptions(arch="owt", columns=2)
    with pytest.raises(ValueError, match="dropout_placement must be one of"):
        NetOptions(arch="owt", dropout_placement="middle")
    net = AlexNet("owt", lrn=True, dropout_mode="paper")  # an ablation of it
    assert [la.name for la in net.layers[:4]] == ["input", "conv1", "relu1", "lrn1"]
    assert NetOptions.from_dict(opts.to_dict()) == opts
    assert net.spec.sizes() == {
        "conv1": 55,
        "pool1": 27,
        "conv2": 27,
        "pool2": 13,
        "conv3": 13,
        "conv4": 13,
        "conv5": 13,
        "pool5": 6,
        "avgpool": 6,
    }


@pytest.mark.slow
def test_names_and_shapes_are_torchvisions_and_its_state_dict_round_trips(model):
    model = copy.deepcopy(model)
    state = numpy_state(model)
    net = AlexNet("owt", "float64")
    assert list(net.shapes) == list(state)  # same names, same order
    assert net.shapes == {k: v.shape for k, v in state.items()}
    assert net.num_params() == 61_100_840 == sum(v.size for v in state.values())
    net.load_state_dict(state)  # as is
    back = net.state_dict()
    assert list(back) == list(state)
    for k in state:
        assert numpy.array_equal(back[k], state[k]), k
    model.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


@pytest.mark.slow
def test_logits_loss_and_every_gradient_equal_torchvisions(model):
    """Eval logits, then training-mode loss and all 16 gradients with dropout off on both
    sides (the masks are the next test's), batch 2, random labels."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    net = AlexNet("owt", "float64", dropout=0.0)
    net.load_state_dict(numpy_state(model))
    x, labels = batch(2)
    model.eval()
    with torch.no_grad():
        assert rel(net.forward(x), model(torch.from_numpy(x)).numpy()) < TOL
    model.train()
    t_loss, t_logits, t_grads = torch_loss_and_grads(model, x, labels)
    loss, grads = net.loss_and_grad(x, labels, train=True)
    assert abs(loss - t_loss) < TOL * abs(t_loss)
    assert list(grads) == list(t_grads)
    worst = {k: rel(grads[k], t_grads[k]) for k in t_grads}
    assert max(worst.values()) < TOL, worst


class FixedMask(torch.nn.Module):
    """torchvision's Dropout with a given keep-mask: x * m / (1 - p) (inverted)."""

    def __init__(self, mask, p):
        super().__init__()
        self.mask, self.scale = torch.from_numpy(mask), 1.0 / (1.0 - p)

    def forward(self, x):
        return x * self.mask * self.scale


@pytest.mark.slow
def test_dropout_sits_before_fc6_and_fc7_with_inverted_scaling(model):
    model = copy.deepcopy(model)
    x, labels = batch(4)
    rng = numpy.random.default_rng(5)
    masks = {
        "flatten": (rng.random((2, 9216)) >= 0.5).astype(numpy.float64),
        "fc6": (rng.random((2, 4096)) >= 0.5).astype(numpy.float64),
    }
    drops = [i for i, m in enumerate(model.classifier) if isinstance(m, torch.nn.Dropout)]
    assert drops == [0, 3]  # before classifier.1 (fc6) and .4 (fc7)
    model.classifier[0] = FixedMask(masks["flatten"], 0.5)
    model.classifier[3] = FixedMask(masks["fc6"], 0.5)
    net = AlexNet("owt", "float64")
    net.load_state_dict(numpy_state(model))
    t_loss, t_logits, t_grads = torch_loss_and_grads(model, x, labels)
    loss, grads = net.loss_and_grad(x, labels, train=True, masks=masks)
    assert abs(loss - t_loss) < TOL * abs(t_loss)
    worst = {k: rel(grads[k], t_grads[k]) for k in t_grads}
    assert max(worst.values()) < TOL, worst
    # the paper's placement with the same weights and masks is another function
    after = AlexNet("owt", "float64", dropout_placement="after")
    after.load_state_dict(net.state_dict())
    other = after.forward(x, train=True, masks={"fc6": masks["fc6"], "fc7": masks["fc6"]})
    assert rel(other, t_logits) > 1e-3


def test_verify_twin_refuses_owt_rather_than_mirror_it_wrongly():
    from refnet.verify.network import twin_of

    with pytest.raises(ValueError, match="twin mirrors the paper's network, not arch 'owt'"):
        twin_of(NetOptions(arch="owt"), {})


def _record(what):
    RAN.append(what)


RAN = []


class Payload:
    """An object whose unpickling would call ``_record``: weights_only must refuse it."""

    def __reduce__(self):
        return _record, ("unpickled",)


def test_a_pth_of_torchvisions_state_dict_loads_through_weights_only(model, tmp_path, monkeypatch):
    torch.save(model.state_dict(), tmp_path / "owt.pth")
    calls = []
    load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    net = load_pth(tmp_path / "owt.pth", dtype="float64")  # arch matched by names, shapes
    assert calls == [True]
    assert (net.options.arch, net.num_classes, net.dtype) == ("owt", 1000, numpy.float64)
    state = numpy_state(model)
    for k, v in net.state_dict().items():
        assert numpy.array_equal(v, state[k]), k
    # bfloat16 weights come as float32 (NumPy has none)
    w = torch.arange(6.0).reshape(2, 3)
    torch.save({"w": w.bfloat16()}, tmp_path / "b.pth")
    got = read_pth(tmp_path / "b.pth")["w"]
    assert got.dtype == numpy.float32 and numpy.array_equal(got, w.numpy())


def test_a_pth_with_anything_but_tensors_is_refused(tmp_path):
    w = torch.zeros(2, 3)
    torch.save({"features.0.weight": w, "epoch": 3}, tmp_path / "ckpt.pth")
    with pytest.raises(
        ValueError,
        match=r"not a state_dict: entries that are not tensors: "
        r"\{'epoch': 'int'\}",
    ):
        read_pth(tmp_path / "ckpt.pth")
    torch.save([w], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="holds a list, not a state_dict"):
        read_pth(tmp_path / "list.pth")
    torch.save({"features.0.weight": Payload()}, tmp_path / "code.pth")
    with pytest.raises(
        ValueError, match=r"code.pth: holds a pickled .*object, which a weights-only load refuses"
    ) as refused:
        read_pth(tmp_path / "code.pth")
    assert "weights_only=False" not in str(refused.value)
    assert RAN == []  # refused before the object was built
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="junk.pth: refused by the weights-only load: Unsupported"):
        read_pth(tmp_path / "junk.pth")


def test_without_torch_a_pth_is_a_clear_import_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"need torch .*pip install torch"):
        read_pth(tmp_path / "any.pth")


def run(module, *argv):
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )


@pytest.mark.slow
def test_owt_trains_evaluates_and_predicts_from_a_folder_of_images(tmp_path):
    """One epoch of a few steps on its 256-pixel store (224 crops), then evaluate and
    predict from the run folder."""
    tree, out = tmp_path / "photos", tmp_path / "run"
    write_image_tree(tree, classes=2, per_class=5, sizes=(64, 300), split=True)
    r = run(
        "refnet.train",
        "--data",
        str(tree),
        "--arch",
        "owt",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--batch",
        "4",
        "--epochs",
        "1",
        "--eval-views",
        "center",
        "--final-views",
        "center",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    r = run(
        "refnet.evaluate",
        "--checkpoint",
        str(out),
        "--data",
        str(tree),
        "--device",
        "cpu",
        "--views",
        "center",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)) == {"center"}
    image = sorted((tree / "val").rglob("*.jpg"))[0]
    r = run(
        "refnet.predict",
        "--checkpoint",
        str(out),
        str(image),
        "--top",
        "2",
        "--device",
        "cpu",
        "--views",
        "center",
    )
    assert r.returncode == 0 and str(image) in r.stdout, r.stderr
