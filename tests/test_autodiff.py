"""The course's worked examples of backpropagation, through symbolic differentiation and the interpreter."""

import numpy as np
import pytest
from helpers import compile_text

import graphc
from graphc.backends.interpreter import Program
from graphc.backends.run import run_training_step
from graphc.errors import GraphcError
from graphc.ir.autodiff import differentiate, training_graph
from graphc.ir.graph import Builder, LayerContext
from graphc.ir.passes import optimize
from graphc.ops.elementwise import Add, Mul, Sigmoid
from graphc.ops.reduce import ReduceSum
from graphc.ops.shape_ops import MatMul


def grads_of(builder, loss, wrt, values):
    g, grads = differentiate(builder.graph, loss, wrt)
    out = Program(g, [loss] + [grads[w] for w in wrt]).run(values)
    return out[loss], {w: out[grads[w]] for w in wrt}


def scalars(*names):
    b = Builder()
    for n in names:
        b.input(n, ())
    b.context = LayerContext("f")
    return b


def test_f_equals_x_plus_y_times_z():
    b = scalars("x", "y", "z")
    b.op("q", Add(), ["x", "y"])
    b.op("f", Mul(), ["q", "z"])
    f, g = grads_of(b, "f", ["x", "y", "z"], {k: np.array(v) for k, v in dict(x=1.0, y=-3.0, z=4.0).items()})
    assert f == -8
    assert (g["x"], g["y"], g["z"]) == (4, 4, -2)


def test_sigmoid_neuron():
    b = scalars("w0", "x0", "w1", "x1", "b")
    b.op("p0", Mul(), ["w0", "x0"])
    b.op("p1", Mul(), ["w1", "x1"])
    b.op("s", Add(), ["p0", "p1"])
    b.op("z", Add(), ["s", "b"])
    b.op("f", Sigmoid(), ["z"])
    vals = {k: np.array(v) for k, v in dict(w0=2.0, x0=-1.0, w1=-3.0, x1=-2.0, b=-3.0).items()}
    f, g = grads_of(b, "f", list(vals), vals)
    assert f == pytest.approx(0.7310585786)
    assert g["w0"] == pytest.approx(-0.1966, abs=1e-4) and round(g["w0"], 2) == -0.20
    assert round(g["x0"], 2) == 0.39 and round(g["w1"], 2) == -0.39
    assert round(g["x1"], 2) == -0.59 and round(g["b"], 2) == 0.20


def test_sum_of_squared_products():
    """X=[[0,1],[2,3]], W=ones: L = Σ(XW)² = 52, ∂L/∂X = [[4,4],[20,20]], ∂L/∂W = [[20,20],[32,32]]."""
    b = Builder()
    b.input("X", (2, 2))
    b.input("W", (2, 2))
    b.context = LayerContext("L")
    b.op("Y", MatMul(), ["X", "W"])
    b.op("Y2", Mul(), ["Y", "Y"])
    b.op("L", ReduceSum(), ["Y2"])
    L, g = grads_of(b, "L", ["X", "W"], {"X": np.array([[0.0, 1.0], [2.0, 3.0]]), "W": np.ones((2, 2))})
    assert L == 52
    np.testing.assert_array_equal(g["X"], [[4, 4], [20, 20]])
    np.testing.assert_array_equal(g["W"], [[20, 20], [32, 32]])


def test_a_tensor_times_itself_has_gradient_2x():
    graph = compile_text("""
        inputs: {x: {shape: [3]}}
        layers: [{name: sq, op: mul, inputs: [x, x]}]
    """)
    assert graph.nodes["sq"]["inputs"] == ("x", "x")  # the ordered inputs keep both operands
    b = Builder(graph.copy())
    b.context = LayerContext("loss")
    b.op("total", ReduceSum(), ["sq"])
    x = np.array([1.0, -2.0, 3.5])
    _, g = grads_of(b, "total", ["x"], {"x": x})
    np.testing.assert_array_equal(g["x"], 2 * x)


def test_softmax_classifier_loss_at_initialisation_is_log_c():
    graph = compile_text("""
        inputs: {x: {shape: [N, 3072]}, label: {shape: [N], dtype: int64}}
        layers: [{name: fc, op: dense, units: 10, init: {weight: {kind: normal, std: 0.0001}}}]
        loss: {op: softmax_cross_entropy, inputs: [fc, label]}
    """)
    rng = np.random.default_rng(0)
    from graphc.ir.params import initial_params

    loss, grads, _ = run_training_step(training_graph(graph), {"x": rng.standard_normal((50, 3072)).astype(np.float32),
                                                               "label": rng.integers(0, 10, 50)}, initial_params(graph, 0))
    assert float(loss) == pytest.approx(-np.log(1 / 10), rel=0.01)
    assert set(grads) == {"fc.weight", "fc.bias"}


def test_no_gradient_flows_into_labels_or_unrequested_inputs():
    graph = compile_text("""
        inputs: {x: {shape: [N, 4]}, label: {shape: [N], dtype: int64}}
        layers: [{name: fc, op: dense, units: 3}]
        loss: {op: softmax_cross_entropy, inputs: [fc, label]}
    """)
    training = training_graph(graph)
    assert set(training.graph["grads"]) == {"fc.weight", "fc.bias"}
    of = {a.get("of") for _, a in training.nodes(data=True) if a["role"] == "grad"}
    assert "x" not in of and "label" not in of
    # no node computes a cotangent of x: the first matmul's input gradient is never emitted
    assert not any(n.startswith("fc/matmul/grad/d0") for n in training.nodes)


def test_training_graph_passes_shape_inference_again():
    from graphc.ir.analysis import infer_shapes

    graph = graphc.compile_spec("specs/lenet5.yaml")
    training, _ = optimize(training_graph(graph))
    types = infer_shapes(training)
    for n, a in training.nodes(data=True):
        assert types[n] == a["type"], n


def test_passes_fold_the_seed_and_report_what_they_removed():
    graph = compile_text("""
        inputs: {x: {shape: [N, 4]}, label: {shape: [N], dtype: int64}}
        layers: [{name: fc, op: dense, units: 3}]
        loss: {op: softmax_cross_entropy, inputs: [fc, label], l2: 0.1}
    """)
    raw = training_graph(graph)
    small, log = optimize(raw)
    assert any("x·1" in change for change in log["constant folding"])  # λW · 1 from the penalty's gradient
    assert small.number_of_nodes() < raw.number_of_nodes()
    inputs = {"x": np.ones((2, 4), np.float32), "label": np.array([0, 2])}
    params = {"fc.weight": np.full((4, 3), 0.5, np.float32), "fc.bias": np.zeros(3, np.float32)}
    before = run_training_step(raw, inputs, params)
    after = run_training_step(small, inputs, params)
    assert before[0] == after[0]
    for p in before[1]:
        np.testing.assert_array_equal(before[1][p], after[1][p])


def test_differentiating_through_an_op_without_gradient_names_the_node():
    from graphc.ops.elementwise import SoftmaxGrad

    b = Builder()
    b.input("y", (2, 3))
    b.input("g", (2, 3))
    b.context = LayerContext("sg", loc=None)
    b.op("sg", SoftmaxGrad(), ["y", "g"])
    b.op("total", ReduceSum(), ["sg"])
    with pytest.raises(GraphcError) as e:
        differentiate(b.graph, "total", ["y"])
    assert "cannot differentiate through softmax_grad 'sg'" in str(e.value)


def test_fan_out_gradients_are_summed():
    graph = compile_text("""
        inputs: {x: {shape: [N, 4]}, label: {shape: [N], dtype: int64}}
        layers:
          - {name: fc, op: dense, units: 4}
          - {name: a, op: relu, inputs: [fc]}
          - {name: b, op: tanh, inputs: [fc]}
          - {name: s, op: add, inputs: [a, b]}
        loss: {op: softmax_cross_entropy, inputs: [s, label]}
    """)
    training = training_graph(graph)
    assert any(a["op"].kind == "add" and a.get("of") == "fc" for _, a in training.nodes(data=True) if a["role"] == "grad")
