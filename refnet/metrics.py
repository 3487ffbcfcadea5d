"""Classification metrics: top-k error and the paper's 10-crop averaging.

Axis legend: N images, K classes, V views (crops) per image.

Top-k error follows the ILSVRC rule: an image counts as correct when its label is among
the k highest-scoring classes. Ties are resolved in the label's favour: the label's rank
is the number of classes that score strictly higher, and the image is correct when that
rank is below k. (An argsort would break ties by class index instead; with real-valued
scores ties do not occur in practice.)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy

from refnet.layers import backend
from refnet.layers.backend import Array


def label_ranks(scores: Array, labels: Array) -> Array:
    """Rank of each label among its row's scores, 0 the highest: ``scores`` (N, K), ``labels``
    (N,)."""
    scores = numpy.asarray(backend.asnumpy(scores))
    labels = numpy.asarray(backend.asnumpy(labels))
    if scores.ndim != 2:
        raise ValueError(f"label_ranks: scores must be (N, K), got shape {scores.shape}")
    if labels.shape != (scores.shape[0],):
        raise ValueError(
            f"label_ranks: labels shape {labels.shape} does not match scores shape {scores.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(
            f"label_ranks: labels must lie in [0, {scores.shape[1]}), "
            f"got range [{labels.min()}, {labels.max()}]"
        )
    own = scores[numpy.arange(len(labels)), labels]  # (N,)
    return (scores > own[:, None]).sum(axis=1)  # (N,)


def topk_errors(scores: Array, labels: Array, ks: Iterable[int] = (1, 5)) -> dict[int, float]:
    """``{k: fraction of images whose label is not in the top k}``; k is capped at K."""
    ranks = label_ranks(scores, labels)
    n = len(ranks)
    if n == 0:
        raise ValueError("topk_errors: no images")
    return {k: float((ranks >= k).sum()) / n for k in ks}


def average_views(probs: Array) -> Array:
    """Average class probabilities over views: (V, N, K) -> (N, K), the paper's 10-crop test."""
    probs = numpy.asarray(backend.asnumpy(probs))
    if probs.ndim != 3:
        raise ValueError(f"average_views: probs must be (V, N, K), got shape {probs.shape}")
    return probs.mean(axis=0)  # (N, K)
