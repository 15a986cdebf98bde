"""Group normalisation's values are PyTorch's nn.GroupNorm's formula (instance norm at groups = C,
a per-example layer norm over (C, H, W) at groups = 1), and its parameters are counted."""

import numpy as np

from helpers import report_of
from graphc.ops.groupnorm import GroupNorm


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
