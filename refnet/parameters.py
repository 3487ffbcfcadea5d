"""An ``AlexNet``'s parameters: drawing, loading and saving them, and moving them
between per-column shards and full arrays.

Axis legend: R rows of a parameter (its outputs). ``AlexNet.params[c]`` holds column c's
shards, ``{key: array on its device}``, split along the first axis as
``refnet.columns.Placement.rows`` says; ``state_dict`` and the full gradients are the
grouped single-device form, keyed ``conv1.weight`` (or the arch's names). In hybrid
parallel (``ranks``) a rank holds only its rows of fc6-fc8; ``state_dict`` and
``gather`` join every rank's rows (a collective), ``load_state_dict`` and ``scatter``
keep this rank's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy

from refnet import arch as arch_table
from refnet import init as init_schemes
from refnet.layers import backend
from refnet.layers.backend import Array
from refnet.nodes import Dropout
from refnet.nodes.base import Layer

if TYPE_CHECKING:
    from refnet.columns import Placement
    from refnet.distributed import Solo

P = TypeVar("P", bound="Parameters")


class Parameters:
    """The parameter methods of ``refnet.network.AlexNet`` (which sets ``spec``,
    ``shapes``, ``columns``, ``placement``, ``params``, ``dtype`` and ``layers``)."""

    # set by AlexNet.__init__ (declared here for the type checker; no values)
    spec: arch_table.ArchSpec
    shapes: dict[str, tuple[int, ...]]
    columns: int
    placement: Placement
    params: list[dict[str, Array]]
    dtype: numpy.dtype
    layers: list[Layer]
    num_classes: int
    pool: tuple[int, int]
    pool_rounding: str
    head: str
    init_scheme: str
    _params_set: bool
    ranks: Solo | None  # hybrid parallel: the world fc6-fc8 are split over

    def fc_names(self) -> tuple[str, ...]:
        """The keys of fc6's, fc7's and fc8's weights and biases (hybrid parallel splits
        them over the ranks)."""
        return tuple(self.key(f"fc{i}", kind) for i in (6, 7, 8) for kind in ("weight", "bias"))

    def rank_split(self) -> dict[str, Any]:
        """``Placement``'s hybrid-parallel arguments: this rank of ``ranks`` and the fc
        names it splits (none without ``ranks``)."""
        if self.ranks is None:
            return {}
        return {"ranks": (self.ranks.rank, self.ranks.size), "sharded": self.fc_names()}

    def replicated_layers(self) -> list[str]:
        """The layers with parameters that every rank holds whole (all of them, or in
        hybrid parallel all but fc6-fc8)."""
        sharded = self.placement.sharded
        return [
            layer.name
            for layer in self.layers
            if layer.param_shapes() and not sharded.intersection(layer.param_shapes())
        ]

    def _param_shapes(self, name: str) -> dict[str, tuple[int, ...]]:
        """{weight key: shape, bias key: shape} of layer ``name`` (grouped form)."""
        return {
            self.key(name, kind): self.shapes[self.key(name, kind)] for kind in ("weight", "bias")
        }

    def dropout_widths(self) -> dict[str, int]:
        """``{name: width}`` of the dropout masks, in the order they are drawn
        (``masks=`` of ``forward`` takes these names: "fc6", "fc7", or "flatten" and
        "fc6" with dropout before the fc layers)."""
        widths = {layer.source: layer.width for layer in self.layers if isinstance(layer, Dropout)}
        return cast("dict[str, int]", widths)  # the network gives every Dropout its width

    def mask_width(self, name: str) -> int:
        """The width of layer ``name``'s outputs, which a dropout mask covers."""
        if name == "flatten":
            return self.shapes[self.key("fc6", "weight")][1]
        return self.shapes[self.key(name, "bias")][0]

    def key(self, layer: str, kind: str) -> str:
        """The name of ``layer``'s ``kind`` ("weight" or "bias") parameter in ``shapes``,
        ``params`` and ``state_dict``: ``conv1.weight``, or the arch's name for it
        (``owt``: torchvision's ``features.0.weight``)."""
        return f"{self.spec.param_prefix(layer)}.{kind}"

    def conv_spec(self, name: str) -> arch_table.ConvSpec:
        """The ``ConvSpec`` of conv1..conv5, or of the "gap" head (1x1, stride 1, no pad)."""
        if name == "head":
            return arch_table.ConvSpec(1, 1, 0, self.num_classes)
        return self.spec.convs[int(name[-1]) - 1]

    def init(self: P, seed: int = 0, scheme: str | None = None) -> P:
        """Draw the initial parameters (``refnet.init.SCHEMES``: "paper", "caffe",
        "cuda-convnet2", "pytorch" or "he"; None: ``self.init_scheme``, the preset's
        scheme when built with ``conventions``, else "paper"). The schemes read the
        layers' own names, conv1 ... fc8, whatever the arch calls them."""
        scheme = self.init_scheme if scheme is None else scheme
        shapes = arch_table.param_shapes(
            self.spec,
            columns=self.columns,
            num_classes=self.num_classes,
            pool=self.pool,
            head=self.head,
            pool_rounding=self.pool_rounding,
            refnet_names=True,
        )
        drawn = init_schemes.initial_params(shapes, seed=seed, scheme=scheme, dtype=self.dtype)
        self.load_state_dict({arch_table.param_key(self.spec, n): a for n, a in drawn.items()})
        return self

    def state_dict(self) -> dict[str, numpy.ndarray]:
        """``{name: NumPy array}`` in PyTorch's names (``conv1.weight``; for ``owt``
        torchvision's, ``features.0.weight``) and the grouped single-device shapes (copies
        on the host)."""
        self._require_params()
        return self.gather(self.params)

    def gather(self, per_column: list[dict[str, Array]]) -> dict[str, numpy.ndarray]:
        """Per-column dicts keyed and split like ``params`` (the parameters, their
        gradients or an optimizer's velocities) as one dict of full host NumPy arrays
        keyed like ``state_dict`` (copies)."""
        return {name: self._gather_one(name, per_column) for name in self.shapes}

    def _gather_one(self, name: str, per_column: list[dict[str, Array]]) -> numpy.ndarray:
        """The full host array of ``name``; a name split over the ranks (hybrid) is
        gathered from every rank (every rank calls this, names in the same order)."""
        P = self.placement
        if name not in P.sharded or self.ranks is None:
            return P.gather(name, self._shards(per_column, name))
        shape = self.shapes[name]
        row = math.prod(shape[1:])  # elements per row
        pieces = []
        for (c, _, _), blocks in zip(P.rows[name], P.rank_rows(name), strict=True):
            mine = numpy.ascontiguousarray(backend.asnumpy(per_column[c][name]))
            full = self.ranks.allgatherv(mine.reshape(-1), [(hi - lo) * row for lo, hi in blocks])
            pieces.append(full.reshape((-1,) + shape[1:]))  # (rows of column c, ...)
        return numpy.concatenate(pieces, axis=0)  # (R, ...)

    def shards_finite(self, per_column: list[dict[str, Array]]) -> bool:
        """Whether this rank's parts of the names split over the ranks (hybrid) hold only
        finite numbers (True when none is split)."""
        xp = self.placement.xp
        for name in sorted(self.placement.sharded):
            for c, _, _ in self.placement.rows[name]:
                with self.placement.device(c):
                    if not bool(xp.isfinite(xp.sum(per_column[c][name]))):
                        return False
        return True

    def scatter(self, full: Mapping[str, Any]) -> list[dict[str, Array]]:
        """A dict of full host arrays keyed like ``state_dict`` as per-column dicts of
        shards on each column's device (copies), the inverse of ``gather``."""
        out: list[dict[str, Array]] = [dict() for _ in range(self.columns)]
        for name in self.shapes:
            for c, shard in self.placement.split(name, full[name]):
                out[c][name] = shard
        return out

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Set every parameter from ``sd`` (as ``state_dict`` gives). Wrong or missing
        names and wrong shapes are refused with ``ValueError`` naming them; values are
        copied and cast to the net's dtype."""
        if not isinstance(sd, dict):
            raise TypeError(f"state_dict must be a dict, got {type(sd).__name__}")
        missing = [n for n in self.shapes if n not in sd]
        extra = [n for n in sd if n not in self.shapes]
        if missing or extra:
            raise ValueError(
                f"state_dict does not match arch {self.spec.name!r} "
                f"(columns={self.columns}): missing {missing}, unexpected {extra}"
            )
        bad = {
            n: tuple(numpy.shape(sd[n]))
            for n in self.shapes
            if tuple(numpy.shape(sd[n])) != self.shapes[n]
        }
        if bad:
            want = {n: self.shapes[n] for n in bad}
            raise ValueError(f"state_dict shapes do not match: got {bad}, expected {want}")
        host = {}
        for name in self.shapes:
            host[name] = numpy.asarray(backend.asnumpy(sd[name]), dtype=self.dtype)
            if not numpy.all(numpy.isfinite(host[name])):
                raise ValueError(f"state_dict[{name!r}] has non-finite values")
        for params, shards in zip(self.params, self.scatter(host), strict=True):
            params.update(shards)
        self._params_set = True

    def _require_params(self) -> None:
        if not self._params_set:
            raise RuntimeError(
                "AlexNet: parameters are not set; call net.init(seed=...) "
                "or net.load_state_dict(...) first"
            )

    def num_params(self) -> int:
        """Number of parameters (60,965,224 for ``alexnet``)."""
        return sum(math.prod(shape) for shape in self.shapes.values())

    def param_counts(self) -> dict[str, int]:
        """``{layer: number of parameters}`` per layer of ``layers`` that has any (weights
        and biases), by the layers' names (conv1 ... fc8, or head)."""
        return {
            layer.name: sum(math.prod(shape) for shape in layer.param_shapes().values())
            for layer in self.layers
            if layer.param_shapes()
        }

    def _shards(self, per_column: list[dict[str, Array]], name: str) -> dict[int, Array]:
        return {c: per_column[c][name] for c, _, _ in self.placement.rows[name]}

    def full_grads(self, grads: list[dict[str, Array]]) -> dict[str, Array]:
        """Per-column gradients (as ``loss_and_grad_columns`` gives) as one dict keyed
        like ``state_dict``, full shapes, on column 0's device (hybrid: gathered from
        every rank)."""
        if self.placement.sharded:
            P = self.placement
            with P.device(0):
                return {k: P.put(v, 0) for k, v in self.gather(grads).items()}
        return {
            name: self.placement.gather_on_device(name, self._shards(grads, name))
            for name in self.shapes
        }

    def column_grads(self, grads: Mapping[str, Array]) -> list[dict[str, Array]]:
        """A full gradient dict (keyed like ``state_dict``) split into per-column shards."""
        out: list[dict[str, Array]] = [dict() for _ in range(self.columns)]
        for name in self.shapes:
            for c, shard in self.placement.split_on_device(name, grads[name]):
                out[c][name] = shard
        return out
