"""`graphc export` and the onnxruntime backend, through the real command."""

import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def graphc(*args):
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=600)


@pytest.fixture
def lenet_inputs(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "in.npz"
    np.savez(path, image=rng.standard_normal((4, 1, 28, 28)).astype(np.float32), label=rng.integers(0, 10, 4))
    return path


def test_export_forward_embeds_parameters_and_runs(tmp_path, lenet_inputs):
    model_path = tmp_path / "lenet.onnx"
    r = graphc("export", SPECS / "lenet5.yaml", "-o", model_path, "--seed", 5)
    assert r.returncode == 0, r.stderr
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["image"]  # parameters are embedded
    # the exported model run by `graphc run MODEL.onnx` equals the interpreter with the same parameters
    out_onnx, out_np = tmp_path / "a.npz", tmp_path / "b.npz"
    r = graphc("run", model_path, "--inputs", lenet_inputs, "--out", out_onnx)
    assert r.returncode == 0 and "CPUExecutionProvider" in r.stderr, r.stderr
    assert graphc("run", SPECS / "lenet5.yaml", "--inputs", lenet_inputs, "--seed", 5, "--out", out_np).returncode == 0
    with np.load(out_onnx) as a, np.load(out_np) as b:
        np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-4, atol=1e-5)


def test_export_training_step_with_optimizer(tmp_path):
    path = tmp_path / "step.onnx"
    r = graphc("export", SPECS / "mlp_digits.yaml", "-o", path, "--training", "--optimizer", "adam")
    assert r.returncode == 0, r.stderr
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    inputs = {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    assert {"x", "label", "lr", "state/step", "state/fc1.weight/m", "state/fc1.weight/v", "fc1.weight"} <= inputs
    assert {"loss", "grad/fc1.weight", "new/fc1.weight", "new/state/fc1.weight/m", "new/state/step"} <= outputs
    assert all(n.domain == "" for n in model.graph.node)
    assert {i.name for i in model.graph.initializer} >= {"fc1.weight", "fc2.bias"}  # defaults for the parameters


def test_export_training_step_without_grads_fuses_dense_updates(tmp_path):
    """--no-grads: no grad/<param> outputs, and each dense weight's momentum velocity is one Gemm
    (C = the velocity, beta = μ) of its gradient's operands; the new values equal the default export's."""
    full, bare = tmp_path / "full.onnx", tmp_path / "bare.onnx"
    common = ("--training", "--optimizer", "momentum", "--momentum", "0.8")
    assert graphc("export", SPECS / "mlp_digits.yaml", "-o", full, *common).returncode == 0
    r = graphc("export", SPECS / "mlp_digits.yaml", "-o", bare, *common, "--no-grads")
    assert r.returncode == 0, r.stderr
    model = onnx.load(bare)
    onnx.checker.check_model(model, full_check=True)
    outputs = [o.name for o in model.graph.output]
    assert not [o for o in outputs if o.startswith("grad/")] and "new/state/fc1.weight/velocity" in outputs
    gemms = {n.output[0]: n for n in model.graph.node if n.op_type == "Gemm"}
    velocity = gemms["new/state/fc1.weight/velocity"]
    assert velocity.input[2] == "state/fc1.weight/velocity"
    assert next(a.f for a in velocity.attribute if a.name == "beta") == pytest.approx(0.8)
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (full, bare)]
    feeds = {i.name: (rng.integers(0, 10, 8) if i.name == "label" else
                      rng.standard_normal([8 if isinstance(d, str) else d for d in i.shape]).astype(np.float32))
             for i in sessions[0].get_inputs()}
    feeds["lr"] = np.array(0.1, np.float32)
    want, got = ({o.name: v for o, v in zip(s.get_outputs(), s.run(None, feeds))} for s in sessions)
    for name, value in got.items():
        np.testing.assert_allclose(value, want[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_no_grads_without_an_update_is_refused(tmp_path):
    r = graphc("export", SPECS / "mlp_digits.yaml", "-o", tmp_path / "s.onnx", "--training", "--no-grads")
    assert r.returncode == 65 and "--no-grads" in r.stderr and "--optimizer" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "s.onnx").exists()


TWIN_BATCHNORM = """\
name: twin_batchnorm
inputs:
  x: {shape: [N, 4]}
  label: {shape: [N], dtype: int64}
layers:
  - {name: a, op: batchnorm, inputs: [x]}
  - {name: b, op: batchnorm, inputs: [x]}
  - {name: s, op: add, inputs: [a, b]}
outputs: {scores: s}
loss: {op: softmax_cross_entropy, inputs: [s, label]}
"""


def test_gradients_merged_by_cse_keep_every_name(tmp_path):
    """a and b have equal gradients (CSE merges them into one node): both names are ONNX outputs."""
    spec, inputs = tmp_path / "twin.yaml", tmp_path / "in.npz"
    spec.write_text(TWIN_BATCHNORM)
    rng = np.random.default_rng(0)
    np.savez(inputs, x=rng.standard_normal((5, 4)).astype(np.float32), label=rng.integers(0, 4, 5))
    grads = {f"grad/{p}" for p in ("a.gamma", "a.beta", "b.gamma", "b.beta")}
    r = graphc("export", spec, "-o", tmp_path / "step.onnx", "--training")
    assert r.returncode == 0, r.stderr
    model = onnx.load(tmp_path / "step.onnx")
    onnx.checker.check_model(model, full_check=True)
    stats = {f"new/{p}.{s}" for p in "ab" for s in ("running_mean", "running_var")}  # equal too, merged too
    assert {o.name for o in model.graph.output} == {"loss"} | grads | stats
    a, b = tmp_path / "ort.npz", tmp_path / "np.npz"
    r = graphc("grad", spec, "--inputs", inputs, "--backend", "onnxruntime", "--out", a)
    assert r.returncode == 0, r.stderr
    assert graphc("grad", spec, "--inputs", inputs, "--out", b).returncode == 0
    with np.load(a) as x, np.load(b) as y:
        assert set(x.files) == set(y.files) == {"loss"} | grads
        for k in x.files:
            np.testing.assert_allclose(x[k], y[k], rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("command", ["run", "grad"])
def test_onnxruntime_backend_matches_numpy(tmp_path, lenet_inputs, command):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    r = graphc(command, SPECS / "lenet5.yaml", "--inputs", lenet_inputs, "--backend", "onnxruntime", "--out", a)
    assert r.returncode == 0, r.stderr
    assert "onnxruntime: CPUExecutionProvider" in r.stderr or "onnxruntime: CUDAExecutionProvider" in r.stderr
    assert "Failed to load" not in r.stderr + r.stdout  # provider-load noise stays off the terminal
    assert graphc(command, SPECS / "lenet5.yaml", "--inputs", lenet_inputs, "--out", b).returncode == 0
    with np.load(a) as x, np.load(b) as y:
        assert sorted(x.files) == sorted(y.files)
        for k in x.files:
            np.testing.assert_allclose(x[k], y[k], rtol=1e-4, atol=1e-4 * float(np.abs(y[k]).max()) + 1e-6, err_msg=k)


def test_device_cuda_without_cuda_is_a_clear_error(tmp_path, lenet_inputs):
    import onnxruntime as ort

    import graphc as g
    from graphc.backends.onnx_export import forward_model
    from graphc.backends.ort import session
    from graphc.errors import GraphcError

    model = forward_model(g.compile_spec(SPECS / "mlp_digits.yaml"))
    try:
        _, provider = session(model, "cuda")
    except GraphcError as e:
        assert "CUDA execution provider does not load" in str(e)
    else:  # a machine with a working GPU
        assert provider == "CUDAExecutionProvider" and "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.parametrize("content,message", [(b"not a protobuf at all", "is not a valid ONNX model"),
                                             (b"", "is not a valid ONNX model")])
def test_broken_onnx_file_is_a_clear_error(tmp_path, lenet_inputs, content, message):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    r = graphc("run", bad, "--inputs", lenet_inputs, "--out", tmp_path / "o.npz")
    assert r.returncode == 65 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o.npz").exists()


def test_foreign_onnx_model_runs(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("Add", ["a", "b"], ["c"])
    graph = helper.make_graph([node], "foreign", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2])])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10), path)
    np.savez(tmp_path / "in.npz", a=np.ones(2, np.float32), b=np.full(2, 2, np.float32))
    r = graphc("run", path, "--inputs", tmp_path / "in.npz", "--out", tmp_path / "o.npz")
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "o.npz") as o:
        np.testing.assert_array_equal(o["c"], [3, 3])
    np.savez(tmp_path / "partial.npz", a=np.ones(2, np.float32))
    r = graphc("run", path, "--inputs", tmp_path / "partial.npz", "--out", tmp_path / "p.npz")
    assert r.returncode == 65 and "lacks b" in r.stderr


def test_export_failure_leaves_nothing(tmp_path):
    out = tmp_path / "m.onnx"
    r = graphc("export", ROOT / "tests" / "bad_specs" / "unknown_op_rleu.yaml", "-o", out)
    assert r.returncode == 65 and "unknown op 'rleu'" in r.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_models_over_the_protobuf_limit_use_external_data(tmp_path, lenet_inputs):
    """The same path a >2 GB model takes, exercised with a lowered limit."""
    import graphc as g
    from graphc.backends.onnx_export import forward_model, save_model
    from graphc.backends.ort import session
    from graphc.ir.params import initial_params

    graph = g.compile_spec(SPECS / "lenet5.yaml")
    model = forward_model(graph, initial_params(graph, 0))
    path = tmp_path / "big.onnx"
    save_model(model, path, limit=10_000)
    assert (tmp_path / "big.onnx.data").stat().st_size > 200_000  # the weights moved out
    assert path.stat().st_size < 50_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data", "in.npz"]
    loaded = onnx.load(str(path))
    onnx.checker.check_model(str(path), full_check=True)
    sess, _ = session(loaded, "cpu")
    with np.load(lenet_inputs) as i:
        out = sess.run(None, {"image": i["image"]})[0]
    assert out.shape == (4, 10)
