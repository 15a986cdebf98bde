"""`graphc train` end to end (the real command in subprocesses): accuracy targets on both backends,
the metrics files and curves, --overfit, --set, and using the trained model with run/export."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
MLP = SPECS / "mlp_digits.yaml"
CNN = SPECS / "digits_cnn.yaml"
TARGETS = {"mlp_digits": 0.975, "digits_cnn": 0.98}


def graphc(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "graphc.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Trained runs, made once: (spec stem, backend) -> (run dir, completed process)."""
    made = {}

    def get(spec: Path, backend: str):
        key = (spec.stem, backend)
        if key not in made:
            out = tmp_path_factory.mktemp(f"{spec.stem}-{backend}") / "run"
            made[key] = (out, graphc("train", spec, "--backend", backend, "--out", out))
        return made[key]

    return get


@pytest.mark.parametrize("spec,backend", [
    (MLP, "numpy"), (MLP, "onnxruntime"),
    pytest.param(CNN, "numpy", marks=pytest.mark.slow), pytest.param(CNN, "onnxruntime", marks=pytest.mark.slow),
], ids=lambda v: getattr(v, "stem", v))
def test_default_command_reaches_the_accuracy_target(runs, spec, backend):
    out, proc = runs(spec, backend)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backend"] == backend
    assert metrics["test_accuracy"] >= TARGETS[spec.stem], metrics["test_accuracy"]
    assert metrics["examples"] == {"train": 1131, "val": 126, "test": 540}  # 70/30, then 10 % of the 70 % for validation
    assert f"test accuracy {100 * metrics['test_accuracy']:.2f}%" in proc.stdout


def test_metrics_files_curves_and_best_model(runs):
    import matplotlib.image

    out, proc = runs(MLP, "numpy")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "best_val_accuracy", "epochs_run", "wall_seconds", "test_loss", "best_epoch", "epochs", "stopped"):
        assert key in metrics, key
    assert metrics["epochs_run"] == 50 and metrics["stopped"] == "completed"
    assert 0.9 < metrics["best_val_accuracy"] <= 1.0 and metrics["wall_seconds"] > 0
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == metrics["epochs_run"], "one row per epoch"
    assert [int(r["epoch"]) for r in rows] == list(range(1, 51))
    assert set(rows[0]) == {"epoch", "lr", "loss", "train_accuracy", "val_loss", "val_accuracy", "seconds",
                            "examples_per_second", "eta_seconds"}
    assert all(float(r["examples_per_second"]) > 0 for r in rows)
    etas = [float(r["eta_seconds"]) for r in rows]
    assert etas[0] > 0 and etas[-1] == 0 and all(e >= 0 for e in etas)  # a fast last epoch may round to 0.00
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] == pytest.approx(0.005) and lrs[10] == pytest.approx(0.005 * 0.95 ** 10)  # exponential decay per epoch
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"]) / 10
    best = metrics["epochs"][metrics["best_epoch"] - 1]
    assert best["val_accuracy"] == metrics["best_val_accuracy"] == max(r["val_accuracy"] for r in metrics["epochs"])
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(out / "curves.png")  # decoded by another PNG reader than the one that wrote it
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 200
    rgb = np.round(image[..., :3] * 255)
    half = rgb.shape[1] // 2
    for panel in (rgb[:, :half], rgb[:, half:]):  # loss, accuracy: each draws the training and validation curves
        for color in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)):  # training blue, validation orange
            near = np.abs(panel - color).max(axis=-1) < 40
            assert near.sum() > 200, (color, near.sum())
            rows = np.nonzero(near.any(axis=1))[0]
            assert rows.max() - rows.min() > 0.3 * panel.shape[0], "a curve spans the plot, not just a legend mark"
    with np.load(out / "best.npz") as best_params:
        assert sorted(best_params.files) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
        assert best_params["fc1.weight"].shape == (64, 100)
    with np.load(out / "normalization.npz") as norm:
        assert norm["mean"].shape == (64,) and norm["scale"] > 0
    assert not list(out.glob("**/*.tmp")), "no temporary files left behind"


def test_trained_model_runs_and_exports_from_the_run_directory(runs, tmp_path):
    """--params RUN_DIR (its best.npz and the run's input normalisation) in `graphc run` and
    `graphc export` on raw digits; onnxruntime predicts the same."""
    from sklearn.datasets import load_digits

    out, proc = runs(MLP, "numpy")
    assert proc.returncode == 0, proc.stderr
    x = load_digits().data[:50].astype(np.float32)  # raw pixels 0..16: the model normalises them itself
    y = load_digits().target[:50]
    np.savez(tmp_path / "in.npz", x=x)
    for params in (out, out / "best.npz"):
        r = graphc("run", MLP, "--inputs", tmp_path / "in.npz", "--params", params, "--out", tmp_path / "a.npz")
        assert r.returncode == 0, r.stderr
    scores = np.load(tmp_path / "a.npz")["scores"]
    assert (scores.argmax(1) == y).mean() >= 0.95
    r = graphc("export", MLP, "--params", out, "-o", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    r = graphc("run", tmp_path / "m.onnx", "--inputs", tmp_path / "in.npz", "--out", tmp_path / "b.npz")
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "b.npz")["scores"], scores, rtol=1e-4, atol=1e-4)
    r = graphc("run", MLP, "--inputs", tmp_path / "in.npz", "--params", tmp_path, "--out", tmp_path / "c.npz")
    assert r.returncode == 65 and "without best.npz" in r.stderr


def test_overfit_a_small_subset(tmp_path):
    r = graphc("train", MLP, "--overfit", 20, "--out", tmp_path / "ok")
    assert r.returncode == 0, r.stderr
    assert "overfit: reached 100% training accuracy on 20 examples" in r.stdout
    metrics = json.loads((tmp_path / "ok" / "metrics.json").read_text())
    assert metrics["overfit"] == {"examples": 20, "reached_100_percent": True, "train_accuracy": 1.0}
    assert metrics["examples"]["train"] == 20 and metrics["examples"]["val"] == 0
    assert metrics["stopped"] == "overfit_reached" and metrics["epochs_run"] < 200
    # a learning rate far too small cannot fit even 20 examples in 3 epochs: reported, exit 3
    r = graphc("train", MLP, "--overfit", 20, "--set", "train.lr=1e-7", "--set", "train.overfit_epochs=3", "--out", tmp_path / "no")
    assert r.returncode == 3, r.stderr
    assert "did NOT reach 100% training accuracy on 20 examples in 3 epochs" in r.stdout


def test_set_overrides_every_train_value(tmp_path):
    r = graphc("train", MLP, "--out", tmp_path / "r", "--set", "train.epochs=3", "--set", "train.lr=0.02",
               "--set", "train.optimizer=momentum", "--set", "train.lr_decay={kind: step, rate: 0.5, every: 2}",
               "--set", "train.batch_size=100", "--set", "layers.fc1.units=32", "--set", "train.l2=1e-4",
               "--set", "train.init.*.bias=zeros", "--set", "train.early_stopping.patience=10")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "r" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(row["lr"]) for row in rows] == pytest.approx([0.02, 0.02, 0.01])  # step decay every 2 epochs
    spec = json.loads((tmp_path / "r" / "spec.json").read_text())
    assert spec["train"]["optimizer"] == "momentum" and spec["train"]["batch_size"] == 100
    assert spec["layers"][0]["units"] == 32 and spec["loss"]["l2"] == 1e-4
    assert spec["train"]["early_stopping"] == {"patience": 10}
    with np.load(tmp_path / "r" / "best.npz") as p:
        assert p["fc1.weight"].shape == (64, 32)


@pytest.mark.parametrize("assignment,message", [
    ("train.lrr=1", "'train.lrr' is not a key of train — did you mean 'lr'?"),
    ("train.lr_decay.knd=step", "did you mean 'kind'?"),
    ("trian.lr=1", "did you mean 'train'?"),
    ("layers.rleu1.units=5", "'layers' has no entry 'rleu1' — did you mean 'relu1'?"),
    ("train.lr=fast", "'train.lr' input should be a valid number"),
    ("train.optimizer=adamm", "'train.optimizer' input should be 'sgd', 'momentum', 'nesterov', 'rmsprop' or 'adam'"),
    ("train.lr", "expected KEY=VALUE"),
    ("train.epochs=0", "'train.epochs' must be ≥ 1"),
])
def test_set_errors_name_the_path_and_write_nothing(tmp_path, assignment, message):
    r = graphc("train", MLP, "--out", tmp_path / "r", "--set", assignment)
    assert r.returncode == 65, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists(), "nothing is written when the command fails"


def test_npz_data_source_and_reshaping_to_the_input(tmp_path):
    """An .npz with x_train/y_train/x_test; validation carved from the training part; flat
    features reshaped to a spec's (N, 1, 8, 8) input."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(tmp_path / "d.npz", x_train=digits.data[:300].reshape(300, 8, 8), y_train=digits.target[:300],
             x_test=digits.data[300:400], y_test=digits.target[300:400])
    spec = tmp_path / "cnn.yaml"
    spec.write_text(CNN.read_text().replace("data: digits", "data: d.npz").replace("filters: 32", "filters: 4")
                    .replace("filters: 64", "filters: 4").replace("units: 128", "units: 16"))
    r = graphc("train", spec, "--out", tmp_path / "r", "--set", "train.epochs=2", "--set", "train.split.val=0.2")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["examples"] == {"train": 240, "val": 60, "test": 100}
    r = graphc("train", MLP, "--out", tmp_path / "bad", "--set", f"train.data={tmp_path / 'missing.npz'}")
    assert r.returncode == 66 and "no such file" in r.stderr


def test_schema_documents_the_train_section():
    r = graphc("schema")
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    assert "train" in schema["properties"]
    train = schema["$defs"]["TrainDecl"]
    assert {"data", "split", "normalize", "optimizer", "lr", "lr_decay", "l2", "init", "epochs", "batch_size", "shuffle", "seed",
            "monitor", "early_stopping"} <= set(train["properties"])
    assert train["additionalProperties"] is False
    assert set(schema["$defs"]["LRDecayDecl"]["properties"]["kind"]["enum"]) == {"none", "step", "exponential", "inverse_time"}


def _strict(text):
    def refuse(name):
        raise ValueError(f"{name} is not strict JSON")
    return json.loads(text, parse_constant=refuse)


def test_log_format_jsonl_is_one_strict_json_object_per_step_and_epoch(tmp_path):
    out = tmp_path / "run"
    proc = graphc("train", MLP, "--set", "train.epochs=3", "--log-format", "jsonl", "--out", out)
    assert proc.returncode == 0, proc.stderr
    events = [_strict(line) for line in proc.stdout.splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["event"] for e in events[-1:]] == ["end"] and len(steps) + len(epochs) + 1 == len(events)
    assert len(steps) == 3 * 18 == events[-1]["steps"]  # 1,131 examples in batches of 64
    assert [s["step"] for s in steps] == list(range(1, 55)) and steps[17]["batch"] == steps[17]["batches"] == 18
    for s in steps:
        assert s["examples_per_second"] is None or s["examples_per_second"] > 0
        assert s["eta_run_seconds"] is None or s["eta_run_seconds"] >= s["eta_epoch_seconds"] >= 0
    assert steps[-1]["eta_epoch_seconds"] == 0
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    for e, r in zip(epochs, rows):
        assert e["examples_per_second"] == float(r["examples_per_second"]) and e["eta_seconds"] == float(r["eta_seconds"])
    assert events[-1]["run_dir"] == str(out) and events[-1]["test_accuracy"] > 0.5
    assert "epoch   1/3" not in proc.stderr  # the text lines are replaced, not doubled


def test_progress_bar_shows_examples_per_second_and_eta(tmp_path):
    code = ("import sys; from graphc.train.loop import Options, train; "
            f"sys.exit(train(Options(spec={str(MLP)!r}, out={str(tmp_path / 'run')!r}, sets=['train.epochs=2'], progress=True)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line.replace("\x1b[K", "") for line in proc.stderr.splitlines()]  # text mode reads the bar's \r as a line end
    bars = [line for line in lines if line.startswith("epoch ") and "[" in line]
    assert bars and all(re.search(r" \d[\d,]* ex/s  ETA epoch \d+s run \d+s", b) for b in bars), bars[:3]
    ends = [line for line in lines if line.startswith("epoch   ")]
    assert re.search(r" \d[\d,]* ex/s  ETA \d+s$", ends[0]) and re.search(r" \d[\d,]* ex/s$", ends[1]), ends
