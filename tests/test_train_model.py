"""A trained model is one thing: `graphc run/export/compile/viz --params RUN_DIR` put the input
normalisation training applied into the forward graph, as ordinary nodes, so raw inputs give the
predictions training measured — on the interpreter and in stock onnxruntime (the real command in
subprocesses)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "specs" / "mlp_digits.yaml"


def graphc(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "graphc.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short run of the course's MLP on the digits, and its raw (unnormalised) test split."""
    from graphc.train.data import load_source, split

    out = tmp_path_factory.mktemp("mlp") / "run"
    r = graphc("train", MLP, "--out", out, "--set", "train.epochs=3")
    assert r.returncode == 0, r.stderr
    parts = split(load_source("digits", ROOT), test=0.3, val=0.1, seed=0, stratify=True)  # the spec's train.split
    x, y = parts["test"].x.astype(np.float32), parts["test"].y
    assert x.max() == 16.0, "raw pixels, not normalised ones"
    return out, x, y, json.loads((out / "metrics.json").read_text())


def test_run_on_raw_inputs_gives_the_trained_predictions(trained, tmp_path):
    out, x, y, metrics = trained
    np.savez(tmp_path / "raw.npz", x=x)
    r = graphc("run", MLP, "--params", out, "--inputs", tmp_path / "raw.npz", "--out", tmp_path / "a.npz")
    assert r.returncode == 0, r.stderr
    scores = np.load(tmp_path / "a.npz")["scores"]
    assert (scores.argmax(1) == y).mean() == pytest.approx(metrics["test_accuracy"], abs=1e-12), \
        "the accuracy training reported on this test split"
    assert "input 'x' is normalised as in training: x.normalize = (x − mean) /" in r.stderr
    assert metrics["test_accuracy"] > 0.9
    # the same as the plain parameters (a copy outside the run directory) on inputs normalised by hand
    with np.load(out / "normalization.npz") as norm:
        np.savez(tmp_path / "normed.npz", x=((x - norm["mean"]) / float(norm["scale"])).astype(np.float32))
    shutil.copy(out / "best.npz", tmp_path / "plain.npz")
    r = graphc("run", MLP, "--params", tmp_path / "plain.npz", "--inputs", tmp_path / "normed.npz", "--out", tmp_path / "b.npz")
    assert r.returncode == 0, r.stderr
    assert "normalised" not in r.stderr, "a parameter file outside a run directory brings no normalisation"
    np.testing.assert_allclose(scores, np.load(tmp_path / "b.npz")["scores"], rtol=1e-5, atol=1e-5)
    # on onnxruntime, and from a file inside the run directory, and from the parameters `run` saved
    r = graphc("run", MLP, "--params", out / "best.npz", "--backend", "onnxruntime", "--inputs", tmp_path / "raw.npz",
               "--out", tmp_path / "c.npz", "--save-params", tmp_path / "saved.npz")
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "c.npz")["scores"], scores, rtol=1e-5, atol=1e-5)
    assert {"x.normalize.mean", "x.normalize.scale"} <= set(np.load(tmp_path / "saved.npz").files)
    r = graphc("run", MLP, "--params", tmp_path / "saved.npz", "--inputs", tmp_path / "raw.npz", "--out", tmp_path / "d.npz")
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "d.npz")["scores"], scores, rtol=1e-5, atol=1e-5)


def test_exported_onnx_takes_raw_inputs_in_stock_onnxruntime(trained, tmp_path):
    import onnx
    import onnxruntime as ort

    out, x, y, metrics = trained
    r = graphc("export", MLP, "--params", out, "-o", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x"]
    scores = sess.run(["scores"], {"x": x})[0]
    assert (scores.argmax(1) == y).mean() == pytest.approx(metrics["test_accuracy"], abs=1e-12)
    model = onnx.load(tmp_path / "m.onnx")
    kinds = [n.op_type for n in model.graph.node]
    assert kinds[:2] == ["Sub", "Div"], kinds
    assert {"x.normalize.mean", "x.normalize.scale"} <= {t.name for t in model.graph.initializer}


def test_report_and_picture_show_the_normalisation(trained, tmp_path):
    out, _, _, _ = trained
    r = graphc("compile", MLP, "--params", out, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    first, fc1 = report["layers"][0], report["layers"][1]
    assert (first["name"], first["op"], first["inputs"], first["shape"]) == ("x.normalize", "normalize", ["x"], ["N", 64])
    assert [(p["op"], p["inputs"]) for p in first["parts"]] == [("sub", ["x", "x.normalize.mean"]),
                                                                ("div", ["x.normalize.center", "x.normalize.scale"])]
    assert first["params"] == 65 and first["params_trainable"] == 0
    assert fc1["inputs"] == ["x.normalize"]
    assert report["params_non_trainable"] == 65
    plain = json.loads(graphc("compile", MLP, "--json").stdout)
    assert [row["name"] for row in plain["layers"]] == ["fc1", "relu1", "fc2"], "without --params: the spec as written"
    r = graphc("viz", MLP, "--trained", out, "-o", tmp_path / "m.dot")
    assert r.returncode == 0, r.stderr
    dot = (tmp_path / "m.dot").read_text()
    assert "<b>x.normalize</b><br/>normalize" in dot


def test_a_normalisation_that_does_not_fit_the_spec_is_a_clear_error(trained, tmp_path):
    out, _, _, _ = trained
    with np.load(out / "best.npz") as best:
        arrays = {k: best[k] for k in best.files}
    np.savez(tmp_path / "p.npz", **arrays, **{"x.normalize.mean": np.zeros(32, np.float32), "x.normalize.scale": np.float32(2)})
    np.savez(tmp_path / "raw.npz", x=np.zeros((2, 64), np.float32))
    r = graphc("run", MLP, "--params", tmp_path / "p.npz", "--inputs", tmp_path / "raw.npz", "--out", tmp_path / "a.npz")
    assert r.returncode != 0
    assert "the normalisation's mean has shape (32,), which does not fit input 'x' (N, 64)" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "a.npz").exists()
