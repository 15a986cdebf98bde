"""The modern activations' kernels at points whose values are known (PyTorch's definitions), beyond the
generated tests that check each kernel against its gradient and ONNX lowering."""

import math

import numpy as np
import pytest
from pydantic import ValidationError

from graphc.ops.pointwise import Clip, Gelu, HardSigmoid, HardSwish, LogSoftmax, Relu6, Silu, Softplus

X = np.array([-4.0, -1.0, 0.0, 1.0, 7.0])


@pytest.mark.parametrize("op,want", [
    (Relu6(), [0, 0, 0, 1, 6]),
    (Clip(min=-2.0, max=3.0), [-2, -1, 0, 1, 3]),
    (Clip(max=0.5), [-4, -1, 0, 0.5, 0.5]),
    (HardSigmoid(), [0, 0.3, 0.5, 0.7, 1]),  # ONNX's α = 0.2
    (HardSigmoid(alpha=1 / 6), [0, 1 / 3, 0.5, 2 / 3, 1]),  # PyTorch's
    (HardSwish(), [0, -1 / 3, 0, 2 / 3, 7]),
    (Gelu(), [-4 * 0.5 * (1 + math.erf(-4 / math.sqrt(2))), -0.15865525393145707, 0, 0.8413447460685429, 7.0]),
    (Gelu(approximate="tanh"), [-2 * (1 + math.tanh(math.sqrt(2 / math.pi) * (-4 - 0.044715 * 64))), -0.15880800939172324, 0, 0.8411919906082768, 7.0]),
    (Silu(), [-4 / (1 + math.e ** 4), -1 / (1 + math.e), 0, 1 / (1 + math.e ** -1), 7 / (1 + math.e ** -7)]),
    (Softplus(), [math.log1p(math.e ** -4), math.log1p(math.e ** -1), math.log(2), math.log1p(math.e), math.log1p(math.e ** 7)]),
    (Softplus(beta=2.0), [math.log1p(math.e ** -8) / 2, math.log1p(math.e ** -2) / 2, math.log(2) / 2, math.log1p(math.e ** 2) / 2,
                          math.log1p(math.e ** 14) / 2]),
])
def test_kernel_values(op, want):
    np.testing.assert_allclose(op.forward(X), want, rtol=1e-6, atol=1e-9)
    assert op.forward(X.astype(np.float32)).dtype == np.float32


def test_log_softmax_is_the_log_of_softmax_and_stable():
    x = np.array([[1000.0, 1001.0, 1002.0], [0.0, 0.0, 0.0]])
    y = LogSoftmax(axis=1).forward(x)
    np.testing.assert_allclose(np.exp(y).sum(axis=1), 1.0)
    np.testing.assert_allclose(y[1], np.log(1 / 3))
    np.testing.assert_allclose(y[0], [-2.40760596, -1.40760596, -0.40760596])
    assert np.all(np.isfinite(y))


def test_clip_bounds_must_be_ordered():
    with pytest.raises(ValidationError, match="min 2 must be ≤ max 1"):
        Clip(min=2.0, max=1.0)
