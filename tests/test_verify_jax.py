"""verify against JAX: the layers and the two-column network agree with JAX's autodiff
(forwards written from the formulas in verify.jax_twins / verify.jax_network, backwards by
jax.vjp), and the comparison can fail: the LRN with Caffe's alpha / n, one LRN across
both columns, JAX's own maximum for ReLU, the other dropout scaling, a conv with the
wrong group count."""

import json

import numpy
import pytest

jax = pytest.importorskip("jax")

from refnet.verify import compare, jax_network, jax_twins, layer_cases, network  # noqa: E402
from refnet.verify.__main__ import main  # noqa: E402

FAST_FAMILIES = [n for n in layer_cases.CASES if n != "conv"]  # conv: ~40 compilations


def failed(rows):
    return [r for r in rows if r.status == "FAIL"]


def jax_layers(dtype, which, seed=0):
    return layer_cases.run(dtype, seed, which, twins=jax_twins, part="jax")


def test_layers_match_jax_float64():
    rows = jax_layers("float64", FAST_FAMILIES)
    assert not failed(rows), compare.format_table(failed(rows))
    assert {r.part for r in rows} == {"jax"}
    assert {r.quantity for r in rows} >= {"y", "dx", "dw", "db", "loss", "dlogits"}
    tied = [r for r in rows if "tied maxima" in r.note and r.quantity == "dx"]
    assert len(tied) == 3  # JAX gives a tie to the first maximum too


@pytest.mark.slow
def test_conv_layers_match_jax_float64():
    rows = jax_layers("float64", ["conv"])
    assert len(rows) > 150 and not failed(rows), compare.format_table(failed(rows))


def test_small_networks_match_jax_via_the_cli(capsys):
    """``python -m refnet.verify --against jax``: tiny (four variants) and demo, eval and train,
    logits, loss and all 16 gradients, in float64; JSON rows name their framework."""
    assert (
        main(["--against", "jax", "--only", "network", "--size", "small", "--quiet", "--json", "-"])
        == 0
    )
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["passed"] and report["frameworks"]["jax"].startswith("JAX ")
    rows = report["rows"]
    assert {r["framework"] for r in rows} == {"jax"} and {r["part"] for r in rows} == {"jax"}
    cases = {r["case"] for r in rows}
    assert {
        "tiny N=4 eval",
        "tiny N=4 train",
        "demo N=4 train",
        "tiny N=4 head=gap train",
        "tiny N=4 lrn_mode=all train",
        "tiny N=4 dropout_mode=inverted train",
    } <= cases
    grads = [r for r in rows if r["case"] == "demo N=4 train" and r["quantity"][:2] == "d "]
    assert len(grads) == 16 and all(r["max_rel"] < 1e-12 for r in grads)
    assert "refnet vs JAX" in captured.err


@pytest.mark.slow
def test_paper_network_matches_jax_float64():
    """alexnet at 227, batch 2, training mode with dropout masks (the CLI runs eval too)."""
    rng = numpy.random.default_rng(0)
    net, twin, state = network.make_pair(
        "alexnet", "float64", rng, make_twin=jax_network.jax_twin_of
    )
    x = rng.standard_normal((2, 3, 227, 227))
    masks = network.dropout_masks(state, 2, 0.5, rng, "float64")
    rows = network.compare_modes(
        "alexnet N=2",
        net,
        twin,
        state,
        x,
        numpy.array([7, 911]),
        masks,
        1e-10,
        modes=("train",),
        part="jax",
    )
    assert len(rows) == 18 and not failed(rows), compare.format_table(failed(rows))


@pytest.mark.slow
def test_float32_matches_jax():
    rows = jax_layers("float32", FAST_FAMILIES)
    rows += network.run("float32", 0, ("small",), make_twin=jax_network.jax_twin_of, part="jax")
    assert not failed(rows), compare.format_table(failed(rows))


# -- the comparison can fail ---------------------------------------------------------------


def test_lrn_with_alpha_over_n_fails(monkeypatch):
    right = jax_twins.lrn
    monkeypatch.setattr(
        jax_twins,
        "lrn",
        lambda x, dy, *, size, alpha, **kw: right(x, dy, size=size, alpha=alpha / size, **kw),
    )  # Caffe's alpha
    rows = jax_layers("float64", ["lrn"])
    ys = [r for r in rows if r.quantity == "y"]
    assert len(ys) == 21 and all(r.status == "FAIL" for r in ys)


def test_relu_by_jnp_maximum_fails_at_exact_zeros(monkeypatch):
    """jnp.maximum(x, 0) splits the gradient at x == 0 (0.5 each side); refnet gives 0."""
    run = jax_twins.compiled_vjp(lambda x: jax.numpy.maximum(x, 0.0))

    def relu_by_maximum(x, dy):
        y, (dx,) = run((x,), dy)
        return {"y": y, "dx": dx}

    monkeypatch.setattr(jax_twins, "relu", relu_by_maximum)
    by = {r.quantity: r for r in jax_layers("float64", ["relu"])}
    assert by["y"].status == "PASS" and by["dx"].status == "FAIL"


def test_other_dropout_scaling_fails(monkeypatch):
    right = jax_twins.dropout
    swap = {"paper": "inverted", "inverted": "paper"}
    monkeypatch.setattr(
        jax_twins, "dropout", lambda x, dy, *, mode, **kw: right(x, dy, mode=swap[mode], **kw)
    )
    rows = jax_layers("float64", ["dropout"])
    assert all(r.status == "FAIL" for r in rows if r.quantity == "y")


def tiny_pair(rng, **options):
    net, twin, state = network.make_pair(
        "tiny", "float64", rng, make_twin=jax_network.jax_twin_of, **options
    )
    x = rng.standard_normal((2, 3, 45, 45))
    return net, twin, state, x, numpy.array([0, 3])


def test_lrn_across_both_columns_fails_against_the_column_network():
    """One LRN over all channels (one group where the paper has one per column)."""
    net, twin, state, x, labels = tiny_pair(numpy.random.default_rng(3))
    wrong = jax_network.JaxAlexNet(state, twin.spec._replace(lrn_groups=1))
    rows = network.compare_modes(
        "tiny", net, wrong, state, x, labels, None, 1e-10, modes=("eval",), part="jax"
    )
    by = {r.quantity: r for r in rows}
    assert by["logits"].status == "FAIL" and by["d conv1.weight"].status == "FAIL"
    right = network.compare_modes(
        "tiny", net, twin, state, x, labels, None, 1e-10, modes=("eval",), part="jax"
    )
    assert not failed(right)


def test_wrong_conv_group_count_is_refused(monkeypatch):
    """The JAX network states the paper's groups itself; weights that do not fit them
    (conv3 read per column instead of across both) are refused by name."""
    _, twin, state, _, _ = tiny_pair(numpy.random.default_rng(4))
    monkeypatch.setitem(jax_network.GROUPS, "conv3", "columns")
    with pytest.raises(ValueError, match="conv3"):
        jax_network.JaxAlexNet(state, twin.spec)


def test_torchvision_layout_is_refused():
    from refnet import NetOptions

    with pytest.raises(ValueError, match="'owt'"):
        jax_network.jax_twin_of(NetOptions(arch="owt"), state=None)
