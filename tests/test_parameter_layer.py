"""The parameter layer: a learned tensor with no input (ViT's position embedding), counted in the
parameters, initialised N(0, 0.02²) or as the layer's init says, trained through the incoming
gradient, and exported as an initializer."""

import numpy as np
import pytest

from helpers import compile_text, report_of
from graphc.backends.interpreter import Program
from graphc.backends.onnx_export import forward_model
from graphc.backends.ort import run, session
from graphc.errors import GraphcError
from graphc.gradcheck import check_gradients
from graphc.ir.params import initial_params

SPEC = """
inputs:
  tokens: {shape: [N, 5, 8]}
layers:
  - {name: proj, op: dense, units: 8}
  - {name: pos, op: parameter, shape: [1, 5, 8]%s}
  - {name: embedded, op: add, inputs: [proj, pos]}
  - {name: pool, op: reduce_mean, axes: [1]}
"""


def test_counted_and_chained_without_inputs():
    report = report_of(SPEC % "")
    assert report["params_trainable"] == 8 * 8 + 8 + 5 * 8
    rows = {r["name"]: r for r in report["layers"]}
    assert rows["pos"]["inputs"] == [] and rows["pos"]["shape"] == [1, 5, 8] and rows["pos"]["params_trainable"] == 40


def test_default_and_given_initialisers():
    values = initial_params(compile_text(SPEC % ""), seed=3)
    assert abs(values["pos.value"].std() - 0.02) < 0.006 and values["pos.value"].shape == (1, 5, 8)
    zeros = initial_params(compile_text(SPEC % ", init: {value: zeros}"), seed=3)
    assert not zeros["pos.value"].any()


def test_gradient_matches_central_differences():
    graph = compile_text((SPEC % "").replace("[N, 5, 8]}\n", "[N, 5, 8]}\n  target: {shape: [N, 8]}\n", 1)
                         + "loss: {op: mse, inputs: [pool, target]}\n")
    rng = np.random.default_rng(0)
    values = {**initial_params(graph), "tokens": rng.standard_normal((3, 5, 8)), "target": rng.standard_normal((3, 8))}
    results = check_gradients(graph, "loss", values, ["pos.value", "proj.weight"])
    assert {r.name for r in results} == {"pos.value", "proj.weight"}
    assert all(r.max_rel_error < 1e-6 for r in results), results


def test_exported_as_an_initializer():
    graph = compile_text(SPEC % "")
    params = initial_params(graph, seed=1)
    model = forward_model(graph, params)
    assert "pos.value" in {t.name for t in model.graph.initializer}
    assert "pos.value" not in {i.name for i in model.graph.input}
    tokens = np.random.default_rng(2).standard_normal((2, 5, 8)).astype(np.float32)
    got = run(session(model, "cpu")[0], {"tokens": tokens})["pool"]
    want = Program(graph, ["pool"]).run({**params, "tokens": tokens})["pool"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_inputs_on_a_parameter_are_an_error():
    with pytest.raises(GraphcError, match=r"parameter 'pos' takes 0 input\(s\), got 1.*remove its 'inputs:'"):
        compile_text("""
        inputs:
          x: {shape: [N, 3]}
        layers:
          - {name: pos, op: parameter, shape: [1, 3], inputs: [x]}
        """)
