"""The table of architectures: every size, kernel and width of each network, in one place.

All entries share AlexNet's topology (five convolutions, three fully-connected layers, LRN
after conv1 and conv2, max pooling after conv1, conv2 and conv5) and differ in sizes
(``owt`` also in three options' defaults and an average pooling). Widths are for both
columns together (the grouped single-device form): each of two columns holds half.

- ``alexnet``: the paper. Input 227 (its text says 224, but 11x11 kernels at stride 4 give
  its 55x55 maps only from 227: docs/conventions.md), stored 256. 60,965,224 parameters.
- ``demo``: scaled for ``python -m refnet.train`` on 2 CPU cores: stored 80, crops 71,
  conv1 7x7 stride 2 -> 33 -> pool 16 -> conv2 -> 16 -> pool 7 -> conv3-5 -> 7 -> pool 3;
  widths 24/64/96/96/64, fc 512/512, 10 classes.
- ``small``: the demo's widths for small images (digits, icons): stored 28, crops 24, conv1
  5x5 stride 1 pad 2 -> 24 -> pool 11 -> conv2 -> 11 -> pool 5 -> conv3-5 -> 5 -> pool 2;
  fc6 reads 64 x 2 x 2 = 256 features (why 5x5: docs/architecture.md).
- ``tiny``: for finite-difference tests; its last pooled maps are 2x2, so fc6's (channel,
  row, column) flattening order is exercised.
- ``zfnet``: Zeiler & Fergus's single model (arXiv 1311.2901, Fig. 3), one column: conv1
  96 7x7 stride 2 pad 1, conv2 256 5x5 stride 2 pad 1, conv3-5 384/384/256 3x3, fc
  4096/4096; 225 -> 111 -> pool 55 -> 27 -> pool 13 -> 13 -> pool 6 (their 110 and 26 need
  ceil pooling: docs/paper.md, "ZFNet"); stored 256. 62,357,608 parameters.
  ``zfnet-wide``: their larger model, conv3/4/5 of 512/1024/512 maps.
- ``owt``: torchvision's AlexNet (Krizhevsky's "One weird trick", arXiv 1404.5997), one
  column: conv1 64 11x11 stride 4 pad 2, conv2 192 5x5, conv3-5 384/256/256 3x3, fc
  4096/4096; 224 -> 55 -> pool 27 -> 27 -> pool 13 -> 13 -> pool 6 -> ``avgpool`` to 6x6
  (adaptive: fc6 reads 9216 at any input). Defaults no LRN, inverted dropout before fc6
  and fc7; parameters named as torchvision's (``param_names``: ``features.0`` ...
  ``classifier.6``). Stored 256. 61,100,840 parameters.

Spatial sizes: ``out = (in + 2 pad - kernel) // stride + 1`` for convolutions,
``floor((in - z) / s) + 1`` for pooling (``ceil`` with ``pool_rounding="ceil"``:
``layers.checks.window_count``); ``ArchSpec.sizes`` computes them for a pooling choice
(3/2, the paper's, or the 2/2 ablation) and rounding.
"""

from __future__ import annotations

import dataclasses

from refnet.layers.checks import window_count


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One convolution: square kernel, stride, zero padding, and width (both columns)."""

    kernel: int
    stride: int
    pad: int
    width: int


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """One architecture: input size, the five convolutions, fc widths, classes, storage.

    ``store_size``: the side of the square images the data set should store;
    ``input_size``: the side of the crops the network takes (the data's crop size).
    """

    name: str
    input_size: int
    convs: tuple[ConvSpec, ...]  # five ConvSpec: conv1 .. conv5
    fc: tuple[int, ...]  # widths of fc6 and fc7
    num_classes: int
    store_size: int
    columns: tuple[int, ...] = (
        1,
        2,
    )  # the column counts this arch allows; the largest is the default
    avgpool: int = 0  # side of an adaptive average pooling after pool5; 0: none
    lrn: bool = True  # defaults of the NetOptions fields of the same names
    dropout_mode: str = "paper"
    dropout_placement: str = "after"
    param_names: tuple[
        tuple[str, str], ...
    ] = ()  # (layer, prefix) pairs where the parameters' names differ

    def param_prefix(self, layer: str) -> str:
        """The prefix of ``layer``'s parameter names: ``layer`` itself (``conv1.weight``)
        or the arch's name for it (``owt``: ``features.0``, as in ``features.0.weight``)."""
        return dict(self.param_names).get(layer, layer)

    @property
    def crop_size(self) -> int:
        return self.input_size

    def sizes(self, pool: tuple[int, int] = (3, 2), rounding: str = "floor") -> dict[str, int]:
        """Spatial sizes after conv1, pool1, conv2, pool2, conv3-5, pool5 (and the average
        pooling, where the arch has one), as a dict, pooling rounded down
        (``rounding="floor"``) or up (``"ceil"``).

        ``ValueError`` when a size drops below 1 for this pooling choice.
        """
        z, s = pool
        out: dict[str, int] = {}
        h = self.input_size
        for i, conv in enumerate(self.convs, start=1):
            h = (h + 2 * conv.pad - conv.kernel) // conv.stride + 1
            if h < 1:
                raise ValueError(f"arch {self.name!r}: conv{i} output is {h}x{h}")
            out[f"conv{i}"] = h
            if i in (1, 2, 5):
                h = window_count(h, z, s, rounding=rounding)
                if h < 1:
                    raise ValueError(
                        f"arch {self.name!r}: pool after conv{i} with "
                        f"window {z} stride {s} gives {h}x{h}"
                    )
                out[f"pool{i}"] = h
        if self.avgpool:
            out["avgpool"] = self.avgpool
        return out

    def fc6_inputs(self, pool: tuple[int, int] = (3, 2), rounding: str = "floor") -> int:
        """Number of inputs of fc6: conv5's width times the pooled map's area."""
        sizes = self.sizes(pool, rounding)
        h = sizes["avgpool" if self.avgpool else "pool5"]
        return self.convs[4].width * h * h


ARCHS = {
    "alexnet": ArchSpec(
        name="alexnet",
        input_size=227,
        convs=(
            ConvSpec(11, 4, 0, 96),
            ConvSpec(5, 1, 2, 256),
            ConvSpec(3, 1, 1, 384),
            ConvSpec(3, 1, 1, 384),
            ConvSpec(3, 1, 1, 256),
        ),
        fc=(4096, 4096),
        num_classes=1000,
        store_size=256,
    ),
    "demo": ArchSpec(
        name="demo",
        input_size=71,
        convs=(
            ConvSpec(7, 2, 0, 24),
            ConvSpec(5, 1, 2, 64),
            ConvSpec(3, 1, 1, 96),
            ConvSpec(3, 1, 1, 96),
            ConvSpec(3, 1, 1, 64),
        ),
        fc=(512, 512),
        num_classes=10,
        store_size=80,
    ),
    "small": ArchSpec(
        # 24 -> conv1 5x5/1 pad 2 -> 24 -> pool 11 -> conv2 5x5 pad 2 -> 11 -> pool 5
        # -> conv3-5 3x3 pad 1 -> 5 -> pool 2; stored at 28 (a 4-pixel margin for crops)
        name="small",
        input_size=24,
        convs=(
            ConvSpec(5, 1, 2, 24),
            ConvSpec(5, 1, 2, 64),
            ConvSpec(3, 1, 1, 96),
            ConvSpec(3, 1, 1, 96),
            ConvSpec(3, 1, 1, 64),
        ),
        fc=(512, 512),
        num_classes=10,
        store_size=28,
    ),
    "tiny": ArchSpec(
        # 45 -> conv1 3x3/2 pad 1 -> 23 -> pool 11 -> conv2 -> 11 -> pool 5 -> 5 -> pool 2
        name="tiny",
        input_size=45,
        convs=(
            ConvSpec(3, 2, 1, 4),
            ConvSpec(5, 1, 2, 8),
            ConvSpec(3, 1, 1, 8),
            ConvSpec(3, 1, 1, 8),
            ConvSpec(3, 1, 1, 8),
        ),
        fc=(16, 16),
        num_classes=5,
        store_size=52,
    ),
    "zfnet": ArchSpec(
        # 225 -> conv1 7x7/2 pad 1 -> 111 -> pool 55 -> conv2 5x5/2 pad 1 -> 27 -> pool 13
        # -> conv3-5 -> 13 -> pool 6 (module doc: their figure's 110 and 26 need ceil pooling)
        name="zfnet",
        input_size=225,
        convs=(
            ConvSpec(7, 2, 1, 96),
            ConvSpec(5, 2, 1, 256),
            ConvSpec(3, 1, 1, 384),
            ConvSpec(3, 1, 1, 384),
            ConvSpec(3, 1, 1, 256),
        ),
        fc=(4096, 4096),
        num_classes=1000,
        store_size=256,
        columns=(1,),
    ),
    "zfnet-wide": ArchSpec(
        name="zfnet-wide",
        input_size=225,
        convs=(
            ConvSpec(7, 2, 1, 96),
            ConvSpec(5, 2, 1, 256),
            ConvSpec(3, 1, 1, 512),
            ConvSpec(3, 1, 1, 1024),
            ConvSpec(3, 1, 1, 512),
        ),
        fc=(4096, 4096),
        num_classes=1000,
        store_size=256,
        columns=(1,),
    ),
    "owt": ArchSpec(
        # 224 -> conv1 11x11/4 pad 2 -> 55 -> pool 27 -> 27 -> pool 13 -> 13 -> pool 6
        # -> average pooling to 6 (the identity here); torchvision's layer indices as names
        name="owt",
        input_size=224,
        convs=(
            ConvSpec(11, 4, 2, 64),
            ConvSpec(5, 1, 2, 192),
            ConvSpec(3, 1, 1, 384),
            ConvSpec(3, 1, 1, 256),
            ConvSpec(3, 1, 1, 256),
        ),
        fc=(4096, 4096),
        num_classes=1000,
        store_size=256,
        columns=(1,),
        avgpool=6,
        lrn=False,
        dropout_mode="inverted",
        dropout_placement="before",
        param_names=(
            ("conv1", "features.0"),
            ("conv2", "features.3"),
            ("conv3", "features.6"),
            ("conv4", "features.8"),
            ("conv5", "features.10"),
            ("fc6", "classifier.1"),
            ("fc7", "classifier.4"),
            ("fc8", "classifier.6"),
        ),
    ),
}


def get_arch(arch: str | ArchSpec) -> ArchSpec:
    """The ``ArchSpec`` for a name in ``ARCHS`` (or an ``ArchSpec`` given directly)."""
    if isinstance(arch, ArchSpec):
        return arch
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
    return ARCHS[arch]


def check_columns(spec: ArchSpec, columns: int) -> None:
    """``ValueError`` unless ``spec`` allows ``columns`` columns."""
    if columns not in spec.columns:
        raise ValueError(
            f"arch {spec.name!r} allows columns {spec.columns}, got {columns!r} "
            f"(a one-column network: its authors trained it ungrouped)"
        )


LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
GROUPED = ("conv2", "conv4", "conv5")  # layers that see only their own column's inputs


HEADS = ("fc", "gap")


def param_shapes(
    spec: str | ArchSpec,
    *,
    columns: int = 2,
    num_classes: int | None = None,
    pool: tuple[int, int] = (3, 2),
    head: str = "fc",
    pool_rounding: str = "floor",
    refnet_names: bool = False,
) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of every parameter in the grouped single-device form, in order.

    Names are PyTorch's (``conv1.weight``, ``conv1.bias``, ..., ``fc8.bias``), or the
    arch's ``param_names`` where it has them (``owt``: torchvision's ``features.0.weight``
    ... ``classifier.6.bias``) unless ``refnet_names`` (the layers' own names). With
    ``columns=2``, conv2, conv4 and conv5 are grouped convolutions (groups=2): their
    weights have half of the previous layer's width as inputs. With ``columns=1`` there
    is no grouping (the paper's single-GPU comparison keeps the same total widths).
    ``pool_rounding``: how pooled sizes round (fc6's inputs depend on it).
    ``head="gap"``: fc6-fc8 replaced by one 1x1 convolution ``head`` (classes, conv5's
    width, 1, 1) whose output is averaged over the positions (no fc widths are used).
    """
    spec = get_arch(spec)
    if columns not in (1, 2):
        raise ValueError(f"columns must be 1 or 2, got {columns!r}")
    check_columns(spec, columns)
    classes = spec.num_classes if num_classes is None else int(num_classes)
    if classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes!r}")
    for i, conv in enumerate(spec.convs, start=1):
        if conv.width % columns:
            raise ValueError(
                f"arch {spec.name!r}: conv{i} width {conv.width} does not "
                f"split into {columns} columns"
            )
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    for name, width in zip(("fc6", "fc7"), spec.fc if head == "fc" else (), strict=False):
        if width % columns:
            raise ValueError(
                f"arch {spec.name!r}: {name} width {width} does not split into {columns} columns"
            )
    shapes: dict[str, tuple[int, ...]] = {}
    c_in = 3
    for i, conv in enumerate(spec.convs, start=1):
        name = f"conv{i}"
        groups = columns if name in GROUPED else 1
        shapes[f"{name}.weight"] = (conv.width, c_in // groups, conv.kernel, conv.kernel)
        shapes[f"{name}.bias"] = (conv.width,)
        c_in = conv.width
    if head == "gap":
        shapes["head.weight"] = (classes, c_in, 1, 1)
        shapes["head.bias"] = (classes,)
    else:
        f_in = spec.fc6_inputs(pool, pool_rounding)
        for name, width in zip(("fc6", "fc7", "fc8"), spec.fc + (classes,), strict=True):
            shapes[f"{name}.weight"] = (width, f_in)
            shapes[f"{name}.bias"] = (width,)
            f_in = width
    if refnet_names:
        return shapes
    return {param_key(spec, name): shape for name, shape in shapes.items()}


def param_key(spec: ArchSpec, name: str) -> str:
    """The arch's name of the parameter refnet calls ``name`` (``"conv1.weight"``)."""
    layer, kind = name.rsplit(".", 1)
    return f"{spec.param_prefix(layer)}.{kind}"
