"""Kernels split over threads (``graphc.ops.threads``) compute exactly what one call over the whole
array computes: every kernel that splits is run on inputs large enough to split, with several
threads and then with one, and the results must be equal bit for bit (elementwise work and per-row
reductions do not depend on the split)."""

from __future__ import annotations

import numpy as np
import pytest

from graphc.ops import threads
from graphc.ops.conv import conv2d_forward, conv2d_grads
from graphc.ops.elementwise import Add, Mul, Relu, ReluGrad, Sub
from graphc.ops.norm import BatchNormGradGamma, BatchNormStats, BatchNormTrain, BatchNormTrainGradInput
from graphc.ops.optim import MomentumVelocity, NesterovUpdate, SGDUpdate
from graphc.ops.pool import MaxPool2d, MaxPool2dGrad

RNG = np.random.default_rng(7)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


X = f32(5, 6, 9, 11)
X0 = np.where(RNG.random(X.shape) < 0.2, 0.0, X).astype(np.float32)  # zeros: ReLU's and max pool's ties
GY = f32(*X.shape)
STATS = BatchNormStats().forward(X)
CASES = {
    "add": (Add().forward, (X, GY)),
    "add broadcast": (Add().forward, (X, f32(6, 1, 1))),
    "add broadcast rows": (Add().forward, (f32(1, 6, 9, 11), GY)),
    "sub": (Sub().forward, (X, GY)),
    "mul": (Mul().forward, (X, f32(11))),
    "relu": (Relu().forward, (X0,)),
    "relu_grad": (ReluGrad().forward, (Relu().forward(X0), GY)),
    "batchnorm_train": (BatchNormTrain().forward, (X, STATS, f32(6), f32(6))),
    "batchnorm_train_grad_input": (BatchNormTrainGradInput().forward, (X, STATS, f32(6), GY, f32(6), f32(6))),
    "batchnorm_grad_gamma": (BatchNormGradGamma().forward, (X, STATS, GY)),
    "sgd_update": (SGDUpdate().forward, (X, GY, np.array(0.01, np.float32))),
    "momentum_velocity": (MomentumVelocity().forward, (X, GY, np.array(0.01, np.float32))),
    "nesterov_update": (NesterovUpdate().forward, (X, GY, f32(*X.shape))),
    "maxpool2d": (MaxPool2d(kernel=3, stride=2, padding=1).forward, (X0,)),
    "maxpool2d_grad": (MaxPool2dGrad(kernel=2).forward, (X0, f32(5, 6, 4, 5))),
    "conv2d": (lambda x, w: conv2d_forward(x, w, None, (1, 1), (1, 1), 1, ((1, 1), (1, 1))), (X, f32(4, 6, 3, 3))),
    "conv2d_grads": (lambda x, gy, w: conv2d_grads(x, gy, w, (1, 1), (1, 1), 1, ((1, 1), (1, 1)), (9, 11)),
                     (X, f32(5, 4, 9, 11), f32(4, 6, 3, 3))),
}


@pytest.mark.parametrize("name", CASES)
def test_split_equals_one_call(name, monkeypatch):
    kernel, args = CASES[name]
    monkeypatch.setattr(threads, "MIN_ITEMS", 16)  # every array here splits
    monkeypatch.setattr(threads, "COUNT", 1)
    whole = kernel(*args)
    for count in (2, 3):
        monkeypatch.setattr(threads, "COUNT", count)
        assert len(threads.blocks(X.shape[0], X.size)) == count
        split = kernel(*args)
        for a, b in zip(*(r if isinstance(r, tuple) else (r,) for r in (whole, split))):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_blocks_cover_the_axis(monkeypatch):
    monkeypatch.setattr(threads, "COUNT", 3)
    monkeypatch.setattr(threads, "MIN_ITEMS", 10)
    assert threads.blocks(7, 1000) == [slice(0, 2), slice(2, 4), slice(4, 7)]
    assert threads.blocks(2, 1000) == [slice(0, 1), slice(1, 2)]  # no more blocks than rows
    assert threads.blocks(7, 15) == [slice(0, 7)]  # too little work to hand off


def test_errors_in_a_block_reach_the_caller(monkeypatch):
    monkeypatch.setattr(threads, "COUNT", 2)
    monkeypatch.setattr(threads, "MIN_ITEMS", 1)

    def fails_on_second(block):
        if block.start:
            raise ValueError("second block")

    with pytest.raises(ValueError, match="second block"):
        threads.over_blocks(fails_on_second, 4, 100)
