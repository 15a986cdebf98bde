"""The ``activation:`` attribute of ``dense`` and ``conv2d`` (Keras's ``Dense(10, activation="relu")``):
the layer expands to its own nodes followed by the activation node, which takes the layer's name, so
the layer's output is the activated value and the report shows the activation in the layer's row.
"""

from __future__ import annotations

from typing import Literal

from .activations import Elu, LeakyRelu
from .base import Op
from .elementwise import Relu, Sigmoid, Softmax, Tanh
from .pointwise import Gelu, HardSigmoid, HardSwish, LogSoftmax, Relu6, Silu, Softplus

#: the activations a layer may name, each with its default attributes (hardsigmoid: ONNX's α = 0.2)
ACTIVATIONS: dict[str, type[Op]] = {cls.kind: cls for cls in (
    Relu, Relu6, LeakyRelu, Elu, Sigmoid, Tanh, HardSigmoid, HardSwish, Gelu, Silu, Softplus, Softmax, LogSoftmax)}

ActivationName = Literal["relu", "relu6", "leaky_relu", "elu", "sigmoid", "tanh", "hardsigmoid", "hardswish", "gelu",
                         "silu", "softplus", "softmax", "log_softmax"]
ACTIVATION_DOC = ("an activation applied to the output, by name with its default attributes "
                  "(relu, relu6, gelu, silu, sigmoid, tanh, softmax, …); none: linear")


def activate(b, name: str, x: str, activation: str) -> str:
    """Add ``activation`` (by kind) applied to ``x`` as node ``name``."""
    return b.op(name, ACTIVATIONS[activation](), [x])
