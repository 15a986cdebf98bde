"""The affine layer ``dense``, a composite of matmul and add (DESIGN.md §2: W is (in, out))."""

from __future__ import annotations

from ..errors import ShapeError
from pydantic import Field

from ..tensor import static
from .base import XAVIER, ZEROS, Composite, Param, PositiveInt, sample
from .elementwise import Add
from .fused_activation import ACTIVATION_DOC, ActivationName, activate
from .shape_ops import MatMul


class Dense(Composite):
    """Affine layer ``y = x · W + b`` on ``x (…, D)`` (D static): weight ``W (D, units)`` (Xavier),
    bias ``b (units,)`` (zeros); output ``(…, units)``.

    Expands to ``<name>/matmul = matmul(x, W)`` and ``<name> = add(<name>/matmul, b)``; without bias
    the matmul node itself is ``<name>``. With ``activation: f``, ``y = f(x · W + b)``: the affine
    part is ``<name>/affine`` and the activation node is ``<name>``. Parameters ``D·units + units``;
    MACs ``D·units`` per row.
    """

    kind = "dense"
    summary = "A fully connected (affine) layer y = x·W + b over the last axis."
    units: PositiveInt = Field(description="number of output features")
    bias: bool = Field(True, description="add a learnable bias b")
    activation: ActivationName | None = Field(None, description=ACTIVATION_DOC)

    samples = (
        sample({"units": 4}, (2, 5)),
        sample({"units": 3, "bias": False}, (2, 3, 5), note="leading dims"),
        sample({"units": 2}, ("N", 6), note="symbolic batch"),
        sample({"units": 3, "activation": "relu"}, (2, 5), note="activation"),
        sample({"units": 3, "bias": False, "activation": "gelu"}, (2, 5), note="activation, no bias"),
    )

    def expand(self, b, name, inputs):
        if self.activation is None:
            return self._affine(b, name, inputs, name)
        return activate(b, name, self._affine(b, name, inputs, f"{name}/affine"), self.activation)

    def _affine(self, b, layer: str, inputs, out: str) -> str:
        """``x · W + b`` as node ``out``, the parameters named after ``layer``."""
        x = inputs[0]
        xt = b.type_of(x)
        if xt.rank < 2:
            raise ShapeError(f"dense input must have rank ≥ 2 (…, D), got shape {xt}")
        d = static(xt.shape[-1], "dense input features D")
        w = b.param(layer, "weight", Param((d, self.units), XAVIER))
        if not self.bias:
            return b.op(out, MatMul(), [x, w])
        y = b.op(f"{layer}/matmul", MatMul(), [x, w])
        bias = b.param(layer, "bias", Param((self.units,), ZEROS))
        return b.op(out, Add(), [y, bias])

    def describe(self):
        return f"{self.units}" + ("" if self.bias else " no bias") + (f" {self.activation}" if self.activation else "")


OPS = (Dense,)
