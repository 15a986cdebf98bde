"""Gradient checks hold the piecewise activations (relu6, clip, hardsigmoid, hardswish) to the piece
of the checked point (:func:`graphc.gradcheck.freeze_kinks`), so a central difference whose ±h
straddles a kink measures the derivative of that piece, not a slope between two pieces."""

import numpy as np
import pytest

from helpers import compile_text
from graphc.backends.interpreter import Program
from graphc.gradcheck import KINKS, freeze_kinks
from graphc.ir.autodiff import training_graph
from graphc.ops.pointwise import PIECEWISE

H = 1e-4

#: layer → its kinks in x
LAYERS = {
    "{op: relu6}": (0.0, 6.0),
    "{op: clip, min: -1.0, max: 0.5}": (-1.0, 0.5),
    "{op: hardsigmoid, alpha: 0.16666666666666666, beta: 0.5}": (-3.0, 3.0),  # PyTorch's
    "{op: hardsigmoid}": (-2.5, 2.5),  # ONNX's α = 0.2
    "{op: hardswish}": (-3.0, 3.0),
}


def test_every_piecewise_activation_is_frozen():
    assert {cls.kind for cls in PIECEWISE} <= set(KINKS)


@pytest.mark.parametrize("layer", LAYERS)
def test_central_differences_straddling_a_kink_agree_on_the_frozen_piece(layer):
    graph = compile_text(f"""
        inputs: {{x: {{shape: [1, 8]}}, t: {{shape: [1, 8]}}}}
        layers:
          - {{name: act, {layer[1:-1]}}}
          - {{name: out, op: scale, factor: 1.5}}
        loss: {{op: mse, inputs: [out, t]}}
    """)
    training = training_graph(graph, wrt_inputs=("x",))
    loss, grad = training.graph["loss"], training.graph["grads"]["x"]
    # each kink approached from both sides, a step of h straddling it, and a point on each piece
    x = np.array([[k + s * H / 3 for k in LAYERS[layer] for s in (-1, 1)] + [-7.0, 0.25, 1.0, 7.0]])
    values = {"x": x, "t": np.linspace(-1.0, 1.0, 8)[None, :]}
    analytic = Program(training, [grad]).run(values)[grad][0]
    act = next(n for n, a in training.nodes(data=True) if a["op"].kind in KINKS)
    frozen, fed = freeze_kinks(training, [act], values)

    def central(g, feeds, i):
        f = lambda v: float(Program(g, [loss]).run(v)[loss])  # noqa: E731
        plus, minus = x.copy(), x.copy()
        plus[0, i] += H
        minus[0, i] -= H
        return (f({**feeds, "x": plus}) - f({**feeds, "x": minus})) / (2 * H)

    raw = np.array([central(training, values, i) for i in range(8)])
    held = np.array([central(frozen, {**values, **fed}, i) for i in range(8)])
    assert np.max(np.abs(raw[:4] - analytic[:4])) > 1e-2  # straddling a kink, the raw graph's slope is off
    np.testing.assert_allclose(held, analytic, rtol=1e-8, atol=1e-10)
    # the frozen graph is the original on the piece: same loss and gradient at the point
    both = Program(frozen, [loss, grad]).run({**values, **fed})
    np.testing.assert_allclose(both[loss], Program(training, [loss]).run(values)[loss], rtol=1e-14)
    np.testing.assert_allclose(both[grad][0], analytic, rtol=1e-14)


@pytest.mark.parametrize("cls", PIECEWISE, ids=lambda c: c.kind)
def test_pieces_reproduce_the_op_and_its_derivative(cls):
    for s in cls.samples:
        op = cls(**s.attrs)
        x0 = np.linspace(-8.0, 8.0, 161)  # every piece, and the kinks themselves
        a, b, c = op.piece(x0)
        a = np.zeros_like(x0) if a is None else a
        c = np.zeros_like(x0) if c is None else c
        np.testing.assert_allclose((a * x0 + b) * x0 + c, op.forward(x0), rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(2 * a * x0 + b, op.dydx(x0), rtol=1e-14, atol=1e-14)
