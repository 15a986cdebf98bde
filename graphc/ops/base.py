"""The op unit: one class per op holding all of its facets side by side (DESIGN.md §3).

An op *is* its attributes: a frozen, strict pydantic model, equal and hashable by value. Facets:

- ``infer(xs) -> TensorType``           shape rule over the input types (data inputs, then params)
- ``params(xs) -> {name: Param}``        parameters the op creates, from the data input types
- ``window(xs) -> (Window, ...) | None`` per spatial dim, what receptive-field analysis composes
- ``macs(xs, y) -> int``                multiply-accumulates for one example
- ``warnings(xs) -> [str]``             legal but suspicious arithmetic (a window that does not tile)
- ``expand(builder, name, inputs)``     composites emit primitive nodes here; primitives add themselves
- ``forward(*arrays) -> array``          the NumPy kernel, vectorised, dtype-preserving
- ``vjp(g, xs, y, gy) -> (name | None, …)`` emits graph nodes for each input's cotangent through the
  :class:`~graphc.ir.autodiff.GradBuilder` ``g`` (never NumPy closures); ``None`` where there is none
- ``onnx(ctx, xs, y)``                   default-domain ONNX nodes computing ``y`` through
  :class:`~graphc.backends.onnx_export.OnnxContext` ``ctx``

``samples`` lists attribute sets and input shapes that the generated tests run every facet on.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..errors import ShapeError
from ..tensor import TensorType, fmt_shape


def _list_to_tuple(value):
    return tuple(value) if isinstance(value, list) else value


IntPair = Annotated[int | tuple[int, int], BeforeValidator(_list_to_tuple)]
IntTuple = Annotated[tuple[int, ...], BeforeValidator(_list_to_tuple)]
ShapeTuple = Annotated[tuple[int | str, ...], BeforeValidator(_list_to_tuple)]  # static and symbolic dims
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
#: sizes per spatial dim: one int for both, or [h, w]; each bounded like the int
PositivePair = Annotated[PositiveInt | tuple[PositiveInt, PositiveInt], BeforeValidator(_list_to_tuple)]
NonNegativePair = Annotated[NonNegativeInt | tuple[NonNegativeInt, NonNegativeInt], BeforeValidator(_list_to_tuple)]
#: per-side padding ((top, bottom), (left, right)), written ``{top, bottom, left, right}`` in a spec
SidePads = tuple[tuple[NonNegativeInt, NonNegativeInt], tuple[NonNegativeInt, NonNegativeInt]]
SIDES = ("top", "bottom", "left", "right")


def side_padding(value):
    """Read a padding value: ``{top, bottom, left, right}`` (missing sides 0) becomes ((top, bottom),
    (left, right)); a list of four is refused, its order being ambiguous (ONNX's [top, left, bottom,
    right] against PyTorch's (left, right, top, bottom))."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in SIDES]
        if unknown:
            raise ValueError(f"padding side {unknown[0]!r} is not one of top, bottom, left, right")
        return ((value.get("top", 0), value.get("bottom", 0)), (value.get("left", 0), value.get("right", 0)))
    if isinstance(value, (list, tuple)) and len(value) == 4 and all(isinstance(v, int) for v in value):
        raise ValueError("a list of 4 paddings is ambiguous (ONNX orders [top, left, bottom, right], PyTorch "
                         "(left, right, top, bottom)); write {top: …, bottom: …, left: …, right: …}")
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


#: ONNX's element types (``onnx.TensorProto.FLOAT`` …), spelled out so that the ops need not import onnx
ONNX_DTYPES = {"float32": 1, "float64": 11, "int64": 7}


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class Init(BaseModel):
    """How a parameter is initialised.

    ``xavier``: N(0, 2/(fan_in+fan_out)); ``kaiming``: N(0, 2/fan_in) (He, for ReLU);
    ``normal``: N(0, std²); ``uniform``: U(−limit, limit); ``zeros``, ``ones``, ``constant`` (value).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
    kind: Literal["xavier", "kaiming", "normal", "uniform", "zeros", "ones", "constant"]
    std: float = Field(0.01, gt=0)
    limit: float = Field(0.05, gt=0)
    value: float = 0.0


@dataclass(frozen=True)
class Param:
    """A parameter an op creates: its shape, default initialiser and whether training updates it."""

    shape: tuple[int, ...]
    init: Init
    trainable: bool = True


ZEROS = Init(kind="zeros")
ONES = Init(kind="ones")
XAVIER = Init(kind="xavier")
KAIMING = Init(kind="kaiming")


@dataclass(frozen=True)
class Window:
    """How one output index reads one spatial input dim.

    Output index ``o`` reads input indices ``floor(step·o) + offset … floor(step·o) + offset + extent − 1``.
    A convolution has ``step = s``, ``offset = −p``, ``extent = d(k−1)+1``. Upsampling and transposed
    convolution have a fractional step ``1/f``: then ``offset`` is exact for output 0 and ``extent``
    is the largest over the output phases, so the field is the worst case over output pixels.
    ``offset`` is None where it depends on a symbolic input size ('same' padding with stride > 1).
    """

    step: Fraction
    offset: Fraction | None
    extent: int


IDENTITY_WINDOW = Window(Fraction(1), Fraction(0), 1)


@dataclass(frozen=True)
class Sample:
    """Attributes and input types for the generated tests (params are created by ``params``)."""

    attrs: dict[str, Any]
    inputs: tuple[TensorType, ...]
    note: str = ""
    positive: tuple[int, ...] = ()  # inputs that must be positive (a variance, a square-root's argument)


def sample(attrs: dict | None = None, *shapes, dtypes=None, note: str = "", positive: tuple[int, ...] = ()) -> Sample:
    dtypes = dtypes or ["float32"] * len(shapes)
    return Sample(attrs or {}, tuple(TensorType(tuple(s), d) for s, d in zip(shapes, dtypes)), note, positive)


class Op(BaseModel):
    """Base of every op. Subclasses set ``kind`` and declare their attributes as fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, defer_build=True, allow_inf_nan=False)

    kind: ClassVar[str]
    #: one full sentence for ``graphc ops`` (user-facing ops); the docstring carries the formula
    summary: ClassVar[str] = ""
    #: (min, max) data inputs written in a spec; max None = variadic. Param inputs follow them.
    arity: ClassVar[tuple[int, int | None]] = (1, 1)
    #: False for ops that only the compiler creates (inputs, params, gradient-only ops)
    user_facing: ClassVar[bool] = True
    #: True for spec-level layers that expand into primitive ops
    composite: ClassVar[bool] = False
    #: True for losses: they may only appear in the spec's ``loss`` section
    is_loss: ClassVar[bool] = False
    samples: ClassVar[tuple[Sample, ...]] = ()

    # --- facets ---------------------------------------------------------------------------------
    def params(self, xs: list[TensorType]) -> dict[str, Param]:
        return {}

    def infer(self, xs: list[TensorType]) -> TensorType:
        raise NotImplementedError

    def window(self, xs: list[TensorType]) -> tuple[Window, ...] | None:
        """Default: an op whose NCHW (or NCL) output keeps its inputs' spatial size is pointwise in space,
        unless it normalises along a spatial ``axis`` (a softmax over the width reads the whole row)."""
        spatial = [x.shape[2:] for x in xs if x.rank in (3, 4)]
        if not spatial or any(s != spatial[0] for s in spatial):
            return None
        axis = getattr(self, "axis", None)
        if isinstance(axis, int) and axis % (len(spatial[0]) + 2) >= 2:
            return None
        return (IDENTITY_WINDOW,) * len(spatial[0])

    def macs(self, xs: list[TensorType], y: TensorType) -> int:
        return 0

    def warnings(self, xs: list[TensorType]) -> list[str]:
        return []

    def index_bound(self, xs: list[TensorType], i: int) -> int | None:
        """For an int64 input ``i`` that indexes something (class labels, token ids): its values lie in
        ``[0, bound)``. Random test inputs are drawn there. ``None``: not an index, or no static bound."""
        return None

    def forward(self, *xs):
        """The NumPy kernel: the forward computation on arrays (inputs in the IR's order)."""
        raise NotImplementedError(f"{self.kind} has no NumPy kernel")

    def fused_forward(self, xs: tuple[str, ...], other: "Op", other_xs: tuple[str, ...]):
        """A kernel computing this node and a later node ``other`` at once, when they share work:
        ``f(*my inputs, *other's inputs) -> (mine, other's)``, given both nodes' input names (the
        interpreter runs it in one step). ``None``, the default: nothing to share."""
        return None

    def reuse_forward(self, xs: tuple[str, ...], earlier: "Op", earlier_xs: tuple[str, ...]):
        """A kernel for this node that also takes the value of an ``earlier`` node which computed part of
        its work from the same inputs: ``f(*my inputs, earlier's value)``. ``None``, the default."""
        return None

    def vjp(self, g, xs: tuple[str, ...], y: str, gy: str) -> tuple[str | None, ...]:
        """Cotangents of the inputs ``xs`` given the output ``y`` and its cotangent ``gy``, as nodes
        emitted through ``g`` (``g.needs(i)`` says whether input ``i`` wants one)."""
        from ..errors import NotDifferentiable

        raise NotDifferentiable(f"{self.kind} has no gradient")

    def onnx(self, ctx, xs: list[str], y: str) -> None:
        """Add default-domain ONNX nodes computing value ``y`` from the values ``xs``."""
        raise NotImplementedError(f"{self.kind} has no ONNX lowering")

    def expand(self, builder, name: str, inputs: list[str]) -> str:
        """Add this op (and its parameters) to ``builder`` as node ``name``; return the output node."""
        types = [builder.type_of(i) for i in inputs]
        param_nodes = [builder.param(name, pname, p) for pname, p in self.params(types).items()]
        return builder.op(name, self, list(inputs) + param_nodes)

    # --- helpers --------------------------------------------------------------------------------
    def attrs(self) -> dict[str, Any]:
        return self.model_dump()

    def describe(self) -> str:
        """Key attributes for tables and pictures, e.g. ``k3 s2 p1``."""
        return ""

    def attributes(self, xs: list[TensorType]) -> dict[str, Any]:
        """Every attribute as a JSON field (``compile --json``), plus values the input types resolve
        (a window op's ``padding_resolved``)."""
        return self.model_dump(mode="json")


def expect_rank(x: TensorType, rank: int | tuple[int, ...], what: str = "input") -> None:
    ranks = (rank,) if isinstance(rank, int) else rank
    if x.rank not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ShapeError(f"{what} must have rank {want}, got shape {fmt_shape(x.shape)}")


def expect_float(x: TensorType, what: str = "input") -> None:
    if not x.dtype.startswith("float"):
        raise ShapeError(f"{what} must be floating point, got {x.dtype}")


def conv_out(n, k: int, s: int, pad_total: int, d: int, ceil_mode: bool = False):
    """``floor((n + p_total − d(k−1) − 1) / s) + 1`` (ceil in ceil mode); an expression for a symbolic
    size ``n`` (ceil written as ``floor((span + s − 1)/s)``, the same for ints)."""
    span = n + pad_total - d * (k - 1) - 1
    return ((span + s - 1) // s if ceil_mode else span // s) + 1


def conv_arith(n: int, k: int, s: int, pad_total: int, d: int, ceil_mode: bool = False) -> str:
    """The course's output-size arithmetic, written out: ``floor((4 + 0 − 7)/1) + 1 = −2``."""
    rnd = "ceil" if ceil_mode else "floor"
    keff = str(k) if d == 1 else f"({d}·({k} − 1) + 1)"
    out = conv_out(n, k, s, pad_total, d, ceil_mode)
    return f"{rnd}(({n} + {pad_total} − {keff})/{s}) + 1 = {out}".replace("= -", "= −")


class Composite(Op):
    """A spec-level layer that expands into primitive ops at build time (``dense``, ``lstm``, …).

    Its shape rule is its expansion's; it needs no kernel, gradient or lowering of its own. It may
    offer one optional facet, ``onnx_layer(ctx, x, params, y)``: the whole layer as ONNX nodes
    computing ``y`` from its data input ``x`` and its parameters ``{name: node}``, which the forward
    export uses in place of the expansion (a recurrent layer as ONNX's ``LSTM``;
    :func:`graphc.backends.onnx_export.whole_layers` says when).
    """

    composite = True

    def infer(self, xs):
        return _Expansion(self, xs).output

    def macs(self, xs, y):
        """The sum over the primitive nodes of the expansion."""
        return _Expansion(self, xs).macs

    def window(self, xs):
        return None

    def expand(self, builder, name: str, inputs: list[str]) -> str:
        raise NotImplementedError


class _Expansion:
    """A composite expanded over inputs of types ``xs`` with only types and MACs kept: the builder
    interface its ``expand`` writes to (``type_of``, ``param``, ``op``), without building a graph."""

    def __init__(self, op: Composite, xs: list[TensorType]):
        self.types: dict[str, TensorType] = {f"x{i}": x for i, x in enumerate(xs)}
        self.macs = 0
        self.output = self.types[op.expand(self, "layer", list(self.types))]

    def type_of(self, name: str) -> TensorType:
        return self.types[name]

    def param(self, layer: str, pname: str, param: Param) -> str:
        name = f"{layer}.{pname}"
        self.types[name] = TensorType(tuple(param.shape))
        return name

    def op(self, name: str, op: Op, inputs) -> str:
        if name in self.types:
            raise ShapeError(f"node '{name}' is defined twice")
        xs = [self.types[i] for i in inputs]
        y = op.infer(xs)
        self.macs += op.macs(xs, y)
        self.types[name] = y
        return name
