"""Train with graphc's exported training step and nothing but onnxruntime and NumPy.

    graphc export specs/mlp_digits.yaml -o model.train.onnx --training --optimizer adam
    python examples/train_with_onnxruntime.py model.train.onnx --steps 100 --lr 0.005

One ``session.run`` is one training step. The step's inputs are the data and labels, the parameters
(their initial values are embedded as initializers), ``lr``, the optimiser state ``state/<param>/<slot>``
(zeros at the start; Adam's ``state/step`` counts steps) and, for each dropout layer, a mask
``<layer>.mask`` the caller draws: inverted dropout, ``Bernoulli(1 − p)/(1 − p)`` with the layer's
rate ``p`` (``--dropout P``). Its outputs are ``loss``, ``grad/<param>``, ``new/<param>`` (updated
parameters and batchnorm running statistics) and ``new/state/…``, which are fed back as the next
step's inputs. The data are scikit-learn's 8×8 digits, standardised, reshaped to the model's data
input ((N, 64) or (N, 1, 8, 8)). Prints the loss of every step; exits 1 if the model lacks something
this loop needs.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from sklearn.datasets import load_digits


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a training step: graphc export SPEC -o MODEL --training --optimizer KIND")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.005)
    ap.add_argument("--dropout", type=float, default=0.5, help="the dropout rate p of the spec's dropout layers")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    model = onnx.load(args.model)
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}  # parameters, statistics
    options = ort.SessionOptions()
    options.log_severity_level = 3  # parameters are initializers *and* inputs (fed each step), which onnxruntime warns about
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    # get_inputs() leaves out the inputs that have a default (the parameters): those are overridable initializers
    inputs = {i.name: i for i in session.get_inputs() + session.get_overridable_initializers()}
    outputs = [o.name for o in session.get_outputs()]
    if "lr" not in inputs:
        print(f"{args.model}: no 'lr' input; export it with --training --optimizer KIND", file=sys.stderr)
        return 1
    masks = [n for n in inputs if n.endswith(".mask")]
    fed_by_us = {n for n in inputs if n in values or n == "lr" or n.startswith("state/") or n in masks}
    data = [n for n in inputs if n not in fed_by_us]
    label = next((n for n in data if inputs[n].type == "tensor(int64)"), None)
    features = next((n for n in data if inputs[n].type.startswith("tensor(float")), None)
    if label is None or features is None or len(data) != 2:
        print(f"{args.model}: expected one float data input and one int64 label input, found {data}", file=sys.stderr)
        return 1

    def concrete(shape, batch):
        return tuple(batch if not isinstance(d, int) else d for d in shape)

    x, y = load_digits(return_X_y=True)
    x = ((x - x.mean(0)) / (x.std(0) + 1e-8)).astype(np.float32)
    x = x.reshape((-1,) + concrete(inputs[features].shape, 1)[1:])
    y = y.astype(np.int64)
    for name in inputs:
        if name.startswith("state/"):  # every slot starts at zero (Adam's step count too)
            values[name] = np.zeros(concrete(inputs[name].shape, 1), np.float32)

    rng = np.random.default_rng(args.seed)
    keep = 1.0 - args.dropout
    order = rng.permutation(len(x))
    for step in range(args.steps):
        start = step * args.batch_size % len(x)
        idx = order[start:start + args.batch_size]
        feeds = {features: x[idx], label: y[idx], "lr": np.asarray(args.lr, np.float32)}
        for name in masks:
            shape = concrete(inputs[name].shape, len(idx))
            feeds[name] = ((rng.random(shape) < keep) / keep).astype(np.float32)
        feeds.update({n: v for n, v in values.items() if n in inputs})
        result = dict(zip(outputs, session.run(outputs, feeds)))
        for name in list(values):  # the updated parameters, statistics and optimiser state
            if f"new/{name}" in result:
                values[name] = result[f"new/{name}"]
        print(f"step {step + 1:>4}  loss {float(result['loss']):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
