"""Ten training steps of LeNet-5 with SGD-momentum and with Adam: the same loss sequence on the
interpreter, on onnxruntime and on onnx's ReferenceEvaluator (float32; losses within rtol 1e-4); and the
updates that take a dense weight's gradient product whole against those that form the gradient."""

from pathlib import Path

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

import graphc
from graphc.backends.interpreter import Program
from graphc.backends.onnx_export import training_model, training_outputs
from graphc.backends.ort import run, session
from graphc.ir.autodiff import training_graph
from graphc.ir.params import initial_params
from graphc.ir.passes import optimize
from graphc.train.optimizers import initial_state, with_optimizer

SPEC = Path(__file__).resolve().parent.parent / "specs" / "lenet5.yaml"


def ten_steps(optimizer: str, lr: float, grads: bool = True):
    graph = graphc.compile_spec(SPEC)
    step_graph = with_optimizer(optimize(training_graph(graph))[0], optimizer, grads=grads)
    names = training_outputs(step_graph)
    model = training_model(step_graph)
    ort_session, _ = session(model, "cpu")
    reference = ReferenceEvaluator(model)
    program = Program(step_graph, sorted(set(names.values())))
    rng = np.random.default_rng(0)
    batch = (rng.standard_normal((16, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 16))
    batches = [batch] * 10  # the course's first check: a small batch is fitted, so the loss falls
    start = {**initial_params(graph, 0), **initial_state(step_graph)}
    engines = {
        "interpreter": lambda feeds: (lambda out: {name: out[node] for name, node in names.items()})(program.run(feeds)),
        "onnxruntime": lambda feeds: run(ort_session, feeds),
        "reference": lambda feeds: dict(zip([o.name for o in model.graph.output], reference.run(None, feeds))),
    }
    losses = {}
    for engine, step in engines.items():
        state, seq = dict(start), []
        for images, labels in batches:
            out = step({"image": images, "label": labels, "lr": np.array(lr, np.float32), **state})
            seq.append(float(out["loss"]))
            state = {k: out[f"new/{k}"] for k in state}
        losses[engine] = np.array(seq)
    return losses


@pytest.mark.parametrize("optimizer,lr", [("momentum", 0.01), ("adam", 1e-3)])
def test_ten_lenet_steps_agree_on_three_engines(optimizer, lr):
    losses = ten_steps(optimizer, lr)
    want = losses["interpreter"]
    assert want[-1] < 0.9 * want[0], "ten steps on one batch lower its loss"
    for engine, got in losses.items():
        np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=engine)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_updates_that_take_the_gradient_product_whole_agree(optimizer):
    """``grads=False`` (what ``graphc train`` builds): the fully connected layers' weight updates are
    one ``matmul_update`` each, no gradient node is left for them, and ten steps give the same losses
    as the step that forms each gradient first, on all three engines."""
    graph = graphc.compile_spec(SPEC)
    training = optimize(training_graph(graph))[0]
    fused = with_optimizer(training, optimizer, grads=False)
    updates = {n: a["inputs"] for n, a in fused.nodes(data=True) if a["op"].kind == "matmul_update"}
    first = "new/state/fc1.weight/velocity" if optimizer != "sgd" else "new/fc1.weight"
    assert len(updates) == 3 and first in updates
    assert not fused.graph["grads"] and training.graph["grads"]["fc1.weight"] not in fused
    bare, whole = ten_steps(optimizer, 0.01), ten_steps(optimizer, 0.01, grads=False)
    for engine, losses in whole.items():
        np.testing.assert_allclose(losses, bare[engine], rtol=1e-5, err_msg=engine)
