"""Top-k error against a naive per-image loop, and 10-view averaging."""
import numpy
import pytest
from hypothesis import given, strategies as st

from refnet import metrics


def _naive_topk(scores, labels, k):
    wrong = 0
    for row, label in zip(scores, labels):
        order = sorted(range(len(row)), key=lambda c: -row[c])
        wrong += label not in order[:k]
    return wrong / len(labels)


@given(st.data())
def test_topk_matches_naive_loop(data):
    n = data.draw(st.integers(1, 30))
    k_classes = data.draw(st.integers(1, 12))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = numpy.random.default_rng(seed)
    scores = rng.standard_normal((n, k_classes))   # continuous: no ties
    labels = rng.integers(0, k_classes, n)
    got = metrics.topk_errors(scores, labels, ks=(1, 3, 5))
    for k in (1, 3, 5):
        assert got[k] == pytest.approx(_naive_topk(scores, labels, k), abs=0)


def test_ties_count_for_the_label():
    scores = numpy.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    assert metrics.topk_errors(scores, numpy.array([1, 2]), ks=(1,))[1] == 0.0


def test_average_views():
    rng = numpy.random.default_rng(0)
    p = rng.random((10, 4, 3))
    numpy.testing.assert_array_equal(metrics.average_views(p), p.sum(axis=0) / 10)


def test_bad_inputs():
    with pytest.raises(ValueError, match="labels"):
        metrics.topk_errors(numpy.zeros((3, 4)), numpy.array([0, 1, 4]))
    with pytest.raises(ValueError, match="shape"):
        metrics.topk_errors(numpy.zeros((3, 4)), numpy.array([0, 1]))
