"""The ``parameter`` layer: a learned tensor that no input computes (ViT's class token and position
embedding), for other layers to add (broadcasting) or concatenate."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from ..errors import ShapeError
from ..tensor import TensorType, fmt_shape
from .base import Init, Op, Param, PositiveInt, _list_to_tuple, sample

#: the transformers' initialiser of learned embeddings (BERT, GPT-2, torchvision's ViT position embedding)
NORMAL_002 = Init(kind="normal", std=0.02)


class Parameter(Op):
    """A trainable tensor of a given static ``shape``: ``y = θ``, the layer's parameter ``value``
    (``<layer>.value``), initialised N(0, 0.02²) unless the layer's ``init: {value: …}`` says otherwise
    (torchvision's ViT class token is ``zeros``, its position embedding ``{kind: normal, std: 0.02}``).

    The layer takes no input (a spec line needs no ``inputs:``); other layers use its output by name,
    e.g. ``add`` broadcasts a ``[1, 197, 768]`` position embedding over the batch. Counted in
    ``params`` and ``params_trainable``; its gradient is the incoming cotangent, ``gθ = gy``; exported
    as an initializer (the ONNX node is an Identity of it). MACs 0.
    """

    kind = "parameter"
    summary = "A learned tensor of a given shape with no input (a class token, a position embedding)."
    arity = (0, 0)
    shape: Annotated[tuple[PositiveInt, ...], BeforeValidator(_list_to_tuple), Field(min_length=1, max_length=8)] = Field(
        description="the tensor's static shape, e.g. [1, 197, 768] (size-1 dims broadcast where it is added)")

    samples = (sample({"shape": [1, 3, 4]}), sample({"shape": [5]}), sample({"shape": [1, 2, 3, 3]}, note="an NCHW map"))

    def params(self, xs):
        return {"value": Param(tuple(self.shape), NORMAL_002)}

    def infer(self, xs):
        if len(xs) != 1 or xs[0].shape != tuple(self.shape):
            got = ", ".join(fmt_shape(x.shape) for x in xs) or "none"
            raise ShapeError(f"parameter takes only its value {fmt_shape(self.shape)} as input, got {got}")
        return TensorType(tuple(self.shape), xs[0].dtype)

    def window(self, xs):
        return None  # it reads no image

    def describe(self):
        return fmt_shape(self.shape)

    def forward(self, value):
        return value.copy()  # a fresh array: a training step may update the parameter in place

    def onnx(self, ctx, xs, y):
        ctx.node("Identity", xs, y)

    def vjp(self, g, xs, y, gy):
        return (gy,)


OPS = (Parameter,)
