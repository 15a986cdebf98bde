"""A device request is honoured or refused, never silently ignored. Through the real command.

The GPU-less machines the suite runs on test the failure path of ``--device cuda``; on a machine
with a working GPU the same commands must run on the CUDA execution provider."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
name: tiny
inputs:
  x: {shape: [N, 4]}
  label: {shape: [N], dtype: int64}
layers:
  - {name: fc, op: dense, units: 3}
outputs: {scores: fc}
loss: {op: softmax_cross_entropy, inputs: [fc, label]}
train:
  data: data.npz
  epochs: 1
  batch_size: 8
"""


def graphc(*args, cwd=ROOT):
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def cuda_works() -> bool:
    import onnxruntime as ort

    from graphc.backends.ort import _quiet_stderr

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["a"], ["b"])], "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    try:
        with _quiet_stderr():
            s = ort.InferenceSession(model.SerializeToString(), providers=["CUDAExecutionProvider"])
        return s.get_providers()[0] == "CUDAExecutionProvider"
    except Exception:  # noqa: BLE001 - any failure to bring CUDA up: no working GPU
        return False


@pytest.fixture
def files(tmp_path):
    (tmp_path / "tiny.yaml").write_text(SPEC)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "in.npz", x=rng.standard_normal((5, 4)).astype(np.float32), label=rng.integers(0, 3, 5))
    np.savez(tmp_path / "data.npz", x_train=rng.standard_normal((40, 4)).astype(np.float32), y_train=rng.integers(0, 3, 40))
    return tmp_path


@pytest.mark.parametrize("command", ["run", "grad", "train"])
def test_device_cuda_is_honoured_or_a_clear_error(files, command):
    args = ["--out", files / "run"] if command == "train" else ["--inputs", files / "in.npz", "--out", files / "out.npz"]
    r = graphc(command, files / "tiny.yaml", *args, "--device", "cuda")
    assert "Traceback" not in r.stderr, r.stderr
    if cuda_works():
        assert r.returncode == 0 and "onnxruntime: CUDAExecutionProvider (--device cuda)" in r.stderr, r.stderr
        return
    assert r.returncode != 0, r.stderr  # never a silent CPU run
    assert "--device cuda" in r.stderr and ("no CUDA provider" in r.stderr or "no GPU visible" in r.stderr
                                            or "libraries do not load" in r.stderr), r.stderr
    assert not (files / "out.npz").exists() and not (files / "run").exists()


@pytest.mark.parametrize("command", ["run", "grad"])
def test_device_cuda_with_the_numpy_backend_is_refused(files, command):
    r = graphc(command, files / "tiny.yaml", "--inputs", files / "in.npz", "--out", files / "out.npz", "--device", "cuda", "--backend", "numpy")
    assert r.returncode != 0 and "the NumPy backend runs on the CPU only" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (files / "out.npz").exists()


@pytest.mark.parametrize("backend,line", [("numpy", "numpy: NumPy interpreter on the CPU (--device auto)"),
                                          ("onnxruntime", "onnxruntime: {} (--device auto)")])
def test_device_auto_names_engine_and_provider_first(files, backend, line):
    r = graphc("run", files / "tiny.yaml", "--inputs", files / "in.npz", "--out", files / "out.npz", "--backend", backend)
    assert r.returncode == 0, r.stderr
    provider = "CUDAExecutionProvider" if cuda_works() else "CPUExecutionProvider"
    assert r.stderr.splitlines()[0] == line.format(provider), r.stderr


def test_train_says_which_engine_it_chose_first(files):
    r = graphc("train", files / "tiny.yaml", "--out", files / "run")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == "numpy: NumPy interpreter (--device auto)", r.stderr
