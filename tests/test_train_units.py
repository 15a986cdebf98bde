"""Pieces of `graphc train` in-process: learning-rate schedules, the split, normalisation, --set
paths, initialiser overrides and checkpoint files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from graphc.errors import GraphcError
from graphc.spec.models import TrainDecl
from graphc.spec.overrides import apply_set
from graphc.train import checkpoint
from graphc.train.data import fit_normalization, prepare, split
from graphc.train.training_spec import load_for_training
from graphc.train.loop import learning_rate, starting_params

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "specs" / "mlp_digits.yaml"
CNN = ROOT / "specs" / "digits_cnn.yaml"


@pytest.mark.parametrize("decay,want", [
    ({"kind": "none"}, [0.1, 0.1, 0.1, 0.1, 0.1]),
    ({"kind": "step", "rate": 0.5, "every": 2}, [0.1, 0.1, 0.05, 0.05, 0.025]),
    ({"kind": "exponential", "rate": 0.9}, [0.1, 0.09, 0.081, 0.0729, 0.06561]),
    ({"kind": "inverse_time", "rate": 1.0}, [0.1, 0.05, 0.1 / 3, 0.025, 0.02]),  # the course's 1/(1 + decay·epoch) table
])
def test_learning_rate_decay(decay, want):
    t = TrainDecl.model_validate({"lr": 0.1, "lr_decay": decay})
    assert [learning_rate(t, e) for e in range(5)] == pytest.approx(want)


def test_split_is_reproducible_stratified_and_disjoint():
    x = np.arange(1000, dtype=np.float32).reshape(500, 2)
    y = np.repeat(np.arange(5), 100)
    a = split({"x_train": x, "y_train": y}, 0.3, 0.1, 0, True)
    b = split({"x_train": x, "y_train": y}, 0.3, 0.1, 0, True)
    c = split({"x_train": x, "y_train": y}, 0.3, 0.1, 1, True)
    assert [len(a[p]) for p in ("train", "val", "test")] == [315, 35, 150]
    for p in a:
        assert np.array_equal(a[p].x, b[p].x)
    assert not np.array_equal(a["test"].x, c["test"].x)
    assert np.bincount(a["test"].y).tolist() == [30] * 5  # stratified: 30 % of each class
    seen = np.concatenate([a[p].x[:, 0] for p in a])
    assert sorted(seen.tolist()) == x[:, 0].tolist(), "every example in exactly one split"


def test_normalization_is_fitted_on_the_training_split_only():
    graph, t, _, _ = load_for_training(MLP)
    splits, _ = prepare(t, graph, "x", "label", MLP.parent)
    assert np.abs(splits["train"].x.mean(axis=0)).max() < 1e-4  # per-feature mean removed on train
    assert splits["train"].x.std() == pytest.approx(1.0, rel=1e-4)
    assert np.abs(splits["test"].x.mean(axis=0)).max() > 1e-3  # the test split used the training statistics
    raw = fit_normalization(np.array([[0.0, 2.0], [2.0, 6.0]]), "per_feature", "std")
    assert raw.mean.tolist() == [1.0, 4.0] and raw.scale == pytest.approx(np.std([-1, -2, 1, 2]))
    assert fit_normalization(np.zeros((3, 2)), "global", "max").scale == 1.0  # no division by zero


def test_cnn_data_is_reshaped_to_its_input():
    graph, t, _, _ = load_for_training(CNN)
    splits, _ = prepare(t, graph, "image", "label", CNN.parent)
    assert splits["train"].x.shape == (1131, 1, 8, 8) and splits["train"].x.dtype == np.float32
    assert splits["train"].y.dtype == np.int64


def test_set_walks_the_spec_structure():
    data = {"inputs": {"x": {"shape": ["N", 64]}}, "layers": [{"name": "fc", "op": "dense", "units": 3}]}
    apply_set(data, "train.lr=3e-4")
    apply_set(data, "train.split.val=0")
    apply_set(data, "layers.fc.units=7")
    apply_set(data, "layers.0.bias=false")
    apply_set(data, "inputs.x.shape=[N, 8, 8]")
    apply_set(data, "train.init.fc.weight={kind: normal, std: 0.1}")
    apply_set(data, "train.init.fc.weight.std=0.2")
    apply_set(data, "train.init.*.bias=zeros")
    assert data["train"] == {"lr": 3e-4, "split": {"val": 0}, "init": {"fc.weight": {"kind": "normal", "std": 0.2}, "*.bias": "zeros"}}
    assert data["layers"][0] == {"name": "fc", "op": "dense", "units": 7, "bias": False}
    assert data["inputs"]["x"]["shape"] == ["N", 8, 8]
    with pytest.raises(GraphcError, match="did you mean 'units'"):
        apply_set(data, "layers.fc.unit=3")
    with pytest.raises(GraphcError, match="is a value"):
        apply_set(data, "train.lr.x=1")


def test_init_overrides_match_parameter_names_and_globs():
    graph, _, _, _ = load_for_training(MLP)
    t = TrainDecl.model_validate({"init": {"*.bias": "ones", "fc2.weight": {"kind": "constant", "value": 0.5}}})
    params = starting_params(graph, t)
    assert np.all(params["fc1.bias"] == 1) and np.all(params["fc2.bias"] == 1) and np.all(params["fc2.weight"] == 0.5)
    with pytest.raises(GraphcError, match="matches no parameter"):
        starting_params(graph, TrainDecl.model_validate({"init": {"fc9.weight": "zeros"}}))


def test_checkpoint_round_trip_checksum_and_fallback(tmp_path):
    params = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    state = {"state/w/m": np.ones((2, 3), np.float32)}
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, params, state, np.arange(4), {"step": step, "epoch": 0, "rng": {"x": 2**100}})
    assert [p.name for p in checkpoint.listed(tmp_path)] == ["ckpt-00000003.npz", "ckpt-00000002.npz"]  # two kept
    p, s, _, meta = checkpoint.read(checkpoint.listed(tmp_path)[0])
    assert np.array_equal(p["w"], params["w"]) and np.array_equal(s["state/w/m"], state["state/w/m"])
    assert meta["step"] == 3 and meta["rng"] == {"x": 2**100}
    newest = checkpoint.listed(tmp_path)[0]
    newest.write_bytes(newest.read_bytes()[:200])  # truncated
    warnings = []
    path, (_, _, _, meta) = checkpoint.newest_valid(tmp_path, warnings.append)
    assert path.name == "ckpt-00000002.npz" and meta["step"] == 2
    assert "ckpt-00000003.npz is unusable" in warnings[0] and "falling back to ckpt-00000002.npz" in warnings[0]
    path.write_bytes(b"garbage")
    with pytest.raises(GraphcError, match="no usable checkpoint"):
        checkpoint.newest_valid(tmp_path, warnings.append)


def test_a_tampered_checkpoint_fails_its_checksum(tmp_path):
    import io
    import zipfile

    checkpoint.save(tmp_path, {"w": np.zeros(4, np.float32)}, {}, np.arange(2), {"step": 1})
    path = checkpoint.listed(tmp_path)[0]
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["param/w"] = np.ones(4, np.float32)  # a valid .npz whose contents changed
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    assert zipfile.is_zipfile(path)
    with pytest.raises(GraphcError, match="checksum"):
        checkpoint.read(path)
    assert json.loads(arrays["meta"].tobytes())["step"] == 1


LOSS_SPECS = {
    "hinge": """
inputs: {x: {shape: [N, 64]}, label: {shape: [N], dtype: int64}}
layers: [{name: fc1, op: dense, units: 32}, {name: relu, op: relu}, {name: fc2, op: dense, units: 10}]
loss: {op: hinge, inputs: [fc2, label]}
""",
    "mse": """
inputs: {x: {shape: [N, 64]}, target: {shape: [N, 10]}}
layers: [{name: fc1, op: dense, units: 32}, {name: relu, op: relu}, {name: fc2, op: dense, units: 10}]
loss: {op: mse, inputs: [fc2, target]}
""",
    "l1": """
inputs: {x: {shape: [N, 64]}, target: {shape: [N, 10]}}
layers: [{name: fc1, op: dense, units: 32}, {name: relu, op: relu}, {name: fc2, op: dense, units: 10}]
loss: {op: l1, inputs: [fc2, target]}
""",
    "sigmoid_cross_entropy": """
inputs: {x: {shape: [N, 64]}, big: {shape: [N, 1]}}
layers: [{name: fc1, op: dense, units: 32}, {name: relu, op: relu}, {name: fc2, op: dense, units: 1}]
loss: {op: sigmoid_cross_entropy, inputs: [fc2, big]}
train: {data: big.npz}
""",
}


@pytest.mark.parametrize("loss", sorted(LOSS_SPECS))
@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "rmsprop"])
def test_every_loss_and_optimizer_trains(tmp_path, loss, optimizer):
    """The course's losses (integer labels, one-hot targets for the regressions, binary targets)
    with the optimisers not used by the example specs: the loss falls, metrics are complete."""
    import contextlib
    import io

    from sklearn.datasets import load_digits

    from graphc.train.loop import Options, train

    digits = load_digits()
    np.savez(tmp_path / "big.npz", x_train=digits.data, y_train=(digits.target >= 5).astype(np.float32).reshape(-1, 1))
    spec = tmp_path / "net.yaml"
    spec.write_text(f"name: {loss}\n" + LOSS_SPECS[loss])
    lr = {"sgd": 0.05, "nesterov": 0.02, "rmsprop": 0.002}[optimizer]
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        code = train(Options(spec=str(spec), out=str(tmp_path / "run"), sets=[f"train.optimizer={optimizer}", f"train.lr={lr}",
                                                                             "train.epochs=4", "train.batch_size=32"]))
    assert code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    losses = [r["loss"] for r in metrics["epochs"]]
    assert losses[-1] < 0.8 * losses[0], losses
    if loss in ("mse", "l1"):
        assert metrics["test_accuracy"] is None and metrics["monitor"] == "val_loss" and metrics["test_loss"] > 0
    else:
        assert metrics["test_accuracy"] > 0.8, metrics["test_accuracy"]


def test_early_stopping_with_patience(tmp_path):
    import contextlib
    import io

    from graphc.train.loop import Options, train

    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        code = train(Options(spec=str(MLP), out=str(tmp_path / "run"), sets=[
            "train.monitor=val_loss", "train.early_stopping={patience: 2, min_delta: 10.0}"]))  # nothing improves by 10
    assert code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["stopped"] == "early_stopping" and metrics["epochs_run"] == 3
    assert metrics["monitor"] == "val_loss"
