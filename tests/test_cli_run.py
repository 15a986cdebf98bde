"""`graphc run`, `grad`, `check-grad` and `compile --backward`, through the real command."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def graphc(*args, cwd=ROOT):
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture
def digits_inputs(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "in.npz"
    np.savez(path, x=rng.standard_normal((5, 64)).astype(np.float32), label=rng.integers(0, 10, 5))
    return path


def test_run_writes_one_array_per_output_and_matches_python(tmp_path, digits_inputs):
    out, params = tmp_path / "out.npz", tmp_path / "p.npz"
    r = graphc("run", SPECS / "mlp_digits.yaml", "--inputs", digits_inputs, "--seed", 3, "--save-params", params, "--out", out)
    assert r.returncode == 0, r.stderr
    with np.load(out) as o, np.load(params) as p, np.load(digits_inputs) as i:
        assert list(o.files) == ["scores"] and o["scores"].shape == (5, 10) and o["scores"].dtype == np.float32
        h = np.maximum(i["x"] @ p["fc1.weight"] + p["fc1.bias"], 0)
        np.testing.assert_allclose(o["scores"], h @ p["fc2.weight"] + p["fc2.bias"], rtol=1e-5, atol=1e-5)
    # the saved parameters reproduce the run
    again = tmp_path / "again.npz"
    assert graphc("run", SPECS / "mlp_digits.yaml", "--inputs", digits_inputs, "--params", params, "--seed", 99, "--out", again).returncode == 0
    with np.load(out) as a, np.load(again) as b:
        np.testing.assert_array_equal(a["scores"], b["scores"])


def test_grad_writes_loss_and_every_parameter_gradient(tmp_path, digits_inputs):
    out = tmp_path / "g.npz"
    r = graphc("grad", SPECS / "mlp_digits.yaml", "--inputs", digits_inputs, "--out", out)
    assert r.returncode == 0, r.stderr
    with np.load(out) as g:
        assert sorted(g.files) == ["grad/fc1.bias", "grad/fc1.weight", "grad/fc2.bias", "grad/fc2.weight", "loss"]
        assert g["loss"].shape == () and g["grad/fc1.weight"].shape == (64, 100)
        assert 1.0 < float(g["loss"]) < 5.0


def test_check_grad_json(tmp_path):
    r = graphc("check-grad", SPECS / "lenet5.yaml", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] is True and report["max_rel_error"] < 1e-6
    assert set(report["params"]) == {f"{l}.{p}" for l in ("conv1", "conv2", "fc1", "fc2", "fc3") for p in ("weight", "bias")}


SIDE_OUTPUT = """\
name: side_output
inputs:
  x: {shape: [N, 4]}
  label: {shape: [N], dtype: int64}
layers:
  - {name: d, op: dense, units: 3, inputs: [x]}
  - {name: side, op: dense, units: 2, inputs: [x]}
outputs: [d, side]
loss: {op: softmax_cross_entropy, inputs: [d, label]}
"""


def test_check_grad_reports_parameters_the_loss_does_not_read_as_zero_gradient(tmp_path):
    spec = tmp_path / "side.yaml"
    spec.write_text(SIDE_OUTPUT)
    r = graphc("check-grad", spec, "--batch", 2)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    for p in ("side.weight", "side.bias"):
        assert "zero gradient: the loss does not depend on it" in lines[p]
    report = json.loads(graphc("check-grad", spec, "--batch", 2, "--json").stdout)
    assert report["ok"] is True
    assert {p: (v["reaches_loss"], v["checked"]) for p, v in report["params"].items()} == {
        "d.weight": (True, 2), "d.bias": (True, 2), "side.weight": (False, 0), "side.bias": (False, 0)}
    assert report["params"]["d.weight"]["max_rel_error"] < 1e-6


@pytest.mark.parametrize("wrt,names", [("inputs", {"image"}),
                                       ("all", {"image"} | {f"{l}.{p}" for l in ("conv1", "conv2", "fc1", "fc2", "fc3") for p in ("weight", "bias")})])
def test_check_grad_wrt_inputs(wrt, names):
    r = graphc("check-grad", SPECS / "lenet5.yaml", "--wrt", wrt, "--batch", 2, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["wrt"] == wrt and set(report["params"]) == names  # the int64 label has no gradient
    assert report["ok"] is True and report["params"]["image"]["checked"] == 2 and report["params"]["image"]["max_rel_error"] < 1e-6


def test_check_grad_wrt_inputs_catches_a_wrong_input_gradient():
    """The input check is a real check: at an impossible tolerance it fails."""
    r = graphc("check-grad", SPECS / "mlp_digits.yaml", "--wrt", "inputs", "--tolerance", "1e-300")
    assert r.returncode == 3 and r.stdout.startswith("x ") and "FAILED" in r.stdout, r.stdout


def test_check_grad_fails_with_exit_3_above_tolerance():
    r = graphc("check-grad", SPECS / "mlp_digits.yaml", "--tolerance", "1e-300")
    assert r.returncode == 3
    assert "FAILED" in r.stdout


FCN = ROOT / "examples" / "fcn_any_size.yaml"


def test_check_grad_size_binds_the_symbolic_sizes(tmp_path):
    """``--size`` gives the check of the spec written with those sizes: the same report, entry for entry."""
    r = graphc("check-grad", FCN)
    assert r.returncode == 65 and "differentiating needs static sizes" in r.stderr
    assert "--size H=…,W=… (compile, check-grad)" in r.stderr and "Traceback" not in r.stderr
    bound = graphc("check-grad", FCN, "--size", "H=12,W=10", "--batch", 2, "--json")
    assert bound.returncode == 0, bound.stderr
    static = tmp_path / "fcn_12x10.yaml"
    static.write_text(FCN.read_text().replace("[N, 3, H, W]", "[N, 3, 12, 10]"))
    written = graphc("check-grad", static, "--batch", 2, "--json")
    assert written.returncode == 0, written.stderr
    assert json.loads(bound.stdout) == json.loads(written.stdout)
    assert json.loads(bound.stdout)["ok"] is True
    r = graphc("check-grad", FCN, "--size", "H=1,W=8")  # pool1's output would be 0 rows
    assert r.returncode == 65 and "fcn_any_size.yaml:16:5: error: maxpool2d 'pool1'" in r.stderr and not r.stdout
    r = graphc("check-grad", FCN, "--size", "D=3")
    assert r.returncode == 65 and "--size binds D, which is not a symbolic dim of the spec's inputs" in r.stderr
    r = graphc("check-grad", FCN, "--size", "H=0")
    assert r.returncode == 2 and "'H=0' is not NAME=SIZE with a positive integer size" in r.stderr


def test_check_grad_params_are_the_point_checked(tmp_path):
    """With ``fc2.weight = 0`` the scores are ``fc2.bias`` whatever fc1 is: fc1's symbolic gradient
    and its central differences are both exactly 0 (at the initialisers' point they are not)."""
    rng = np.random.default_rng(5)
    params = tmp_path / "p.npz"
    np.savez(params, **{"fc1.weight": 0.2 * rng.standard_normal((64, 100)).astype(np.float32),
                        "fc2.weight": np.zeros((100, 10), np.float32)})
    r = graphc("check-grad", SPECS / "mlp_digits.yaml", "--params", params, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] is True and set(report["params"]) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert report["params"]["fc1.weight"]["max_abs_error"] == report["params"]["fc1.bias"]["max_abs_error"] == 0.0
    assert report["params"]["fc2.weight"]["max_abs_error"] > 0  # fc2's gradient is not zero: it is checked
    initial = json.loads(graphc("check-grad", SPECS / "mlp_digits.yaml", "--json").stdout)
    assert initial["params"]["fc1.weight"]["max_abs_error"] > 0


def test_check_grad_params_are_checked_against_the_spec_and_bring_the_normalisation(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"fc1.weight": np.zeros(3, np.float32), "fc3.bias": np.zeros(10, np.float32)})
    r = graphc("check-grad", SPECS / "mlp_digits.yaml", "--params", bad)
    assert r.returncode == 65 and not r.stdout and "Traceback" not in r.stderr
    assert "--params: 'fc1.weight' has shape (3,), the spec needs (64, 100)" in r.stderr
    assert "--params has 'fc3.bias', which is not a parameter of this spec — did you mean 'fc2.bias'?" in r.stderr
    r = graphc("check-grad", SPECS / "mlp_digits.yaml", "--params", tmp_path)
    assert r.returncode == 65 and "a directory without best.npz" in r.stderr
    # a parameter file carrying an input's normalisation (as run --save-params writes it) puts it in the graph
    norm = tmp_path / "norm.npz"
    np.savez(norm, **{"x.normalize.mean": np.full(64, 0.5, np.float32), "x.normalize.scale": np.float32(2.0)})
    r = graphc("check-grad", SPECS / "mlp_digits.yaml", "--params", norm, "--wrt", "all", "--json")
    assert r.returncode == 0, r.stderr
    assert "input 'x' is normalised as in training: x.normalize = (x − mean) / 2" in r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] is True and "x" in report["params"] and "x.normalize.mean" not in report["params"]  # not trainable


def test_compile_backward_shows_gradient_nodes(tmp_path):
    r = graphc("compile", SPECS / "lenet5.yaml", "--backward", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    kinds = {b["op"] for b in report["backward"]}
    assert {"conv2d_grad_weight", "conv2d_grad_input", "maxpool2d_grad", "tanh_grad", "softmax_cross_entropy_grad"} <= kinds
    assert set(report["grads"]) == {f"{l}.{p}" for l in ("conv1", "conv2", "fc1", "fc2", "fc3") for p in ("weight", "bias")}
    assert "conv2d_grad_input" not in {b["op"] for b in report["backward"] if b["of"] == "conv1"}  # no gradient into the image
    text = graphc("compile", SPECS / "lenet5.yaml", "--backward", "--passes")
    assert "backward" in text.stdout and "dead code" in text.stderr


@pytest.mark.parametrize("case,message", [
    ("missing", "lacks input 'label'"),
    ("extra", "has 'lable', which is not an input of the spec — did you mean 'label'?"),
    ("shape", "'x' has shape (5, 63), the spec declares (N, 64)"),
    ("dtype", "'label' has dtype float32, the spec declares int64"),
    ("batch", "'label' has N = 4, but another input has N = 5"),
])
def test_inputs_are_checked(tmp_path, case, message):
    rng = np.random.default_rng(0)
    arrays = {"x": rng.standard_normal((5, 64)).astype(np.float32), "label": rng.integers(0, 10, 5)}
    if case == "missing":
        del arrays["label"]
    elif case == "extra":
        arrays["lable"] = arrays.pop("label")
    elif case == "shape":
        arrays["x"] = arrays["x"][:, :63]
    elif case == "dtype":
        arrays["label"] = arrays["label"].astype(np.float32)
    elif case == "batch":
        arrays["label"] = arrays["label"][:4]
    path, out = tmp_path / "in.npz", tmp_path / "g.npz"
    np.savez(path, **arrays)
    r = graphc("grad", SPECS / "mlp_digits.yaml", "--inputs", path, "--out", out)
    assert r.returncode == 65 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_pickled_arrays_are_refused(tmp_path):
    path, out = tmp_path / "in.npz", tmp_path / "o.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), allow_pickle=True)
    r = graphc("run", SPECS / "mlp_digits.yaml", "--inputs", path, "--out", out)
    assert r.returncode == 65 and "pickle" in r.stderr and not out.exists()


def test_lying_npy_header_is_refused_before_allocating(tmp_path):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1_000_000_000, 64)})
    path, out = tmp_path / "in.npz", tmp_path / "o.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", header.getvalue())  # the header claims 256 GB; no data follows
    r = graphc("run", SPECS / "mlp_digits.yaml", "--inputs", path, "--out", out)
    assert r.returncode == 65 and "claims" in r.stderr, r.stderr
    assert not out.exists()


def test_a_spec_without_loss_cannot_be_differentiated(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("inputs: {x: {shape: [N, 3]}}\nlayers: [{op: dense, units: 2}]\n")
    np.savez(tmp_path / "in.npz", x=np.ones((2, 3), np.float32))
    r = graphc("grad", spec, "--inputs", tmp_path / "in.npz", "--out", tmp_path / "g.npz")
    assert r.returncode == 65 and "no loss" in r.stderr
