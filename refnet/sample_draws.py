"""Each training sample's random draws, a pure function of (seed, epoch, sample index).

Axis legend: N samples of a batch (or of one rank's slice of it), D a dropout layer's
width.

A sample's crop, flip, PCA lighting and dropout masks in epoch ``e`` come from its own
generator, ``numpy.random.default_rng([seed, stream, e, i])``, where ``i`` is the
sample's index in the training store and ``stream`` is 1 for the augmentation and 2 for
dropout. Nothing depends on which batch the sample falls in, on the batch size, on
which rank of a data-parallel job computes it, or on how many ranks there are; so
``mpiexec -n R`` trains the same model as one process (``refnet.distributed``), and a
resumed run needs no generator state, only the loader's position.

    aug = augmentation(seed, epoch, indices, stored_size, crop, lighting_std=0.1)
        -> data.augment.Augmentation for the samples ``indices`` (N,), in that order;
           per sample, draws as ``data.augment.draw(rng, 1, ...)``
    masks = dropout_masks(seed, epoch, indices, {"fc6": 4096, "fc7": 4096}, p)
        -> {name: (N, D) bool keep-mask}, as ``AlexNet.forward(..., masks=)`` takes;
           per sample one ``rng.random(D) >= p`` per layer, in the order given

One generator costs about 10 us to make (a SeedSequence hash; ``default_rng`` adds 5 us of
argument handling, so it is made directly): 64 per demo step (batch 32) against a 50 ms
step, 256 per alexnet step (batch 128) against 2 s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy

from refnet.data import augment

AUGMENT, DROPOUT = 1, 2  # the streams


def generator(seed: int, stream: int, epoch: int, index: int) -> numpy.random.Generator:
    """The generator of one sample's draws of ``stream`` in ``epoch``."""
    entropy = [int(seed), stream, int(epoch), int(index)]  # default_rng(entropy), made directly
    return numpy.random.Generator(numpy.random.PCG64(numpy.random.SeedSequence(entropy)))


def augmentation(
    seed: int,
    epoch: int,
    indices: Sequence[int] | numpy.ndarray,
    stored_size: int,
    crop: int,
    *,
    lighting_std: float = 0.1,
) -> augment.Augmentation:
    """The ``data.augment.Augmentation`` of the samples ``indices`` (module doc)."""
    parts = [
        augment.draw(
            generator(seed, AUGMENT, epoch, i), 1, stored_size, crop, lighting_std=lighting_std
        )
        for i in _indices(indices)
    ]
    if not parts:
        return augment.draw(
            numpy.random.default_rng(0), 0, stored_size, crop, lighting_std=lighting_std
        )
    return augment.Augmentation(*(numpy.concatenate(field) for field in zip(*parts, strict=True)))


def dropout_masks(
    seed: int,
    epoch: int,
    indices: Sequence[int] | numpy.ndarray,
    widths: Mapping[str, int],
    p: float,
) -> dict[str, numpy.ndarray]:
    """``{name: (N, D) bool}`` keep-masks of the samples ``indices`` for the dropout layers
    ``widths`` ({name: D}, drawn in that order), keeping each unit with probability 1 - p
    (``layers.dropout``'s rule: keep where a uniform draw is >= p)."""
    indices = _indices(indices)
    masks = {name: numpy.empty((len(indices), width), dtype=bool) for name, width in widths.items()}
    for row, i in enumerate(indices):
        rng = generator(seed, DROPOUT, epoch, i)
        for name, width in widths.items():
            masks[name][row] = rng.random(width) >= p
    return masks


def _indices(indices: Sequence[int] | numpy.ndarray) -> numpy.ndarray:
    indices = numpy.asarray(indices)
    if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
        raise ValueError(
            f"sample indices must be a 1-d integer array, got shape "
            f"{indices.shape} dtype {indices.dtype}"
        )
    return indices
