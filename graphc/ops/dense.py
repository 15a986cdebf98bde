"""The affine layer ``dense``, a composite of matmul and add (DESIGN.md §2: W is (in, out))."""

from __future__ import annotations

from ..errors import ShapeError
from pydantic import Field

from ..tensor import static
from .base import XAVIER, ZEROS, Composite, Param, PositiveInt, sample
from .elementwise import Add
from .shape_ops import MatMul


class Dense(Composite):
    """Affine layer ``y = x · W + b`` on ``x (…, D)`` (D static): weight ``W (D, units)`` (Xavier),
    bias ``b (units,)`` (zeros); output ``(…, units)``.

    Expands to ``<name>/matmul = matmul(x, W)`` and ``<name> = add(<name>/matmul, b)``; without bias
    the matmul node itself is ``<name>``. Parameters ``D·units + units``; MACs ``D·units`` per row.
    """

    kind = "dense"
    summary = "A fully connected (affine) layer y = x·W + b over the last axis."
    units: PositiveInt = Field(description="number of output features")
    bias: bool = Field(True, description="add a learnable bias b")

    samples = (
        sample({"units": 4}, (2, 5)),
        sample({"units": 3, "bias": False}, (2, 3, 5), note="leading dims"),
        sample({"units": 2}, ("N", 6), note="symbolic batch"),
    )

    def expand(self, b, name, inputs):
        x = inputs[0]
        xt = b.type_of(x)
        if xt.rank < 2:
            raise ShapeError(f"dense input must have rank ≥ 2 (…, D), got shape {xt}")
        d = static(xt.shape[-1], "dense input features D")
        w = b.param(name, "weight", Param((d, self.units), XAVIER))
        if not self.bias:
            return b.op(name, MatMul(), [x, w])
        y = b.op(f"{name}/matmul", MatMul(), [x, w])
        bias = b.param(name, "bias", Param((self.units,), ZEROS))
        return b.op(name, Add(), [y, bias])


    def describe(self):
        return f"{self.units}" + ("" if self.bias else " no bias")


OPS = (Dense,)
