"""Group normalisation's values are PyTorch's nn.GroupNorm's formula (instance norm at groups = C,
a per-example layer norm over (C, H, W) at groups = 1), and its parameters are counted; lrn is
ONNX's LRN as its text defines it, even window sizes included."""

import numpy as np
import pytest

from helpers import report_of
from graphc.ops.groupnorm import GroupNorm
from graphc.ops.lrn import LRN


def normalised(x, axes, eps=1e-5):
    return (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)


def test_groups_equal_to_channels_is_instance_norm():
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 5))
    gamma, beta = np.arange(1.0, 5.0), np.arange(4.0) / 10
    y = GroupNorm(groups=4).forward(x, gamma, beta)
    np.testing.assert_allclose(y, normalised(x, (2, 3)) * gamma[:, None, None] + beta[:, None, None], rtol=1e-12)


def test_one_group_normalises_each_example_over_every_channel_and_position():
    x = np.random.default_rng(1).standard_normal((3, 6, 2, 2)) * 4 + 2
    np.testing.assert_allclose(GroupNorm(groups=1, affine=False).forward(x), normalised(x, (1, 2, 3)), rtol=1e-12)


def test_each_group_is_normalised_alone():
    x = np.random.default_rng(2).standard_normal((2, 6, 4)) + np.arange(6.0)[None, :, None]
    y = GroupNorm(groups=3, affine=False, eps=1e-3).forward(x)
    for g in range(3):
        np.testing.assert_allclose(y[:, 2 * g:2 * g + 2], normalised(x[:, 2 * g:2 * g + 2], (1, 2), 1e-3), rtol=1e-12)


def test_parameters_are_counted_only_when_affine():
    spec = """
    inputs:
      x: {shape: [N, 8, 4, 4]}
    layers:
      - {name: gn, op: groupnorm, groups: 2, affine: %s}
    """
    assert report_of(spec % "true")["params_trainable"] == 16
    assert report_of(spec % "false")["params_total"] == 0


def lrn_by_the_definition(x, size, alpha, beta, bias):
    """ONNX's LRN text, one channel at a time: the window is max(0, c − ⌊(size−1)/2⌋) … min(C−1, c + ⌈(size−1)/2⌉)."""
    import math

    y = np.empty_like(x)
    for c in range(x.shape[1]):
        lo, hi = max(0, c - math.floor((size - 1) / 2)), min(x.shape[1] - 1, c + math.ceil((size - 1) / 2))
        y[:, c] = x[:, c] / (bias + alpha / size * (x[:, lo:hi + 1] ** 2).sum(axis=1)) ** beta
    return y


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8])
def test_lrn_is_onnxs_definition(size):
    x = np.random.default_rng(size).standard_normal((2, 6, 3, 2))
    got = LRN(size=size, alpha=0.7, beta=0.75, bias=2.0).forward(x)
    np.testing.assert_allclose(got, lrn_by_the_definition(x, size, 0.7, 0.75, 2.0), rtol=1e-12)


def test_lrn_even_window_reaches_one_channel_further_after():
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    y = LRN(size=2, alpha=2.0, beta=1.0, bias=1.0).forward(x)[0, :, 0, 0]  # windows {0, 1}, {1, 2}, {2}
    np.testing.assert_allclose(y, [1 / (1 + 5), 2 / (1 + 13), 3 / (1 + 9)])
