"""Adaptive pooling follows PyTorch's window rule start = floor(i·n/o), end = ceil((i+1)·n/o) exactly,
also for sizes that do not divide; global_maxpool is the max over the plane."""

import numpy as np

from graphc.ops.adaptive_pool import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AdaptiveMaxPool2dGrad, GlobalMaxPool, adaptive_bounds
from graphc.ops.pool import AvgPool2d


def test_bounds_are_pytorchs():
    # n = 5, o = 3: [0, 2), [1, 4), [3, 5) (torch.nn.AdaptiveAvgPool1d(3) on 5 inputs)
    start, end = adaptive_bounds(5, 3)
    assert start.tolist() == [0, 1, 3] and end.tolist() == [2, 4, 5]
    start, end = adaptive_bounds(7, 7)
    assert start.tolist() == list(range(7)) and end.tolist() == list(range(1, 8))
    start, end = adaptive_bounds(3, 4)  # upsampling: windows of one, repeated
    assert start.tolist() == [0, 0, 1, 2] and end.tolist() == [1, 2, 3, 3]


def test_values_when_sizes_do_not_divide():
    x = np.arange(5.0).reshape(1, 1, 1, 5) + np.zeros((1, 1, 2, 1))
    avg = AdaptiveAvgPool2d(output_size=[1, 3]).forward(x)
    np.testing.assert_allclose(avg[0, 0, 0], [0.5, 2.0, 3.5])
    mx = AdaptiveMaxPool2d(output_size=[1, 3]).forward(x)
    np.testing.assert_allclose(mx[0, 0, 0], [1, 3, 4])


def test_dividing_sizes_equal_a_plain_pool():
    x = np.random.default_rng(0).standard_normal((2, 3, 14, 12))
    np.testing.assert_allclose(AdaptiveAvgPool2d(output_size=[7, 3]).forward(x),
                               AvgPool2d(kernel=[2, 4], stride=[2, 4]).forward(x))


def test_max_gradient_goes_to_the_first_maximum_of_each_window_and_sums_over_overlaps():
    x = np.array([[[[1.0, 5.0, 5.0, 0.0, 2.0]]]])  # windows [0, 2) [1, 4) [3, 5): maxima at 1, 1, 4
    gx = AdaptiveMaxPool2dGrad(output_size=[1, 3]).forward(x, np.array([[[[1.0, 10.0, 100.0]]]]))
    np.testing.assert_allclose(gx[0, 0, 0], [0, 11, 0, 0, 100])


def test_global_maxpool():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(GlobalMaxPool().forward(x), x.max(axis=(2, 3)))
