"""Symbolic spatial sizes: an input [N, 3, H, W] compiles, shapes and MACs are expressions of H and
W, ``--size`` binds them (giving exactly the static spec's report), and a run binds them from its
inputs. Through the real ``graphc`` command where a user would see it."""

import json
import pickle
import subprocess
from pathlib import Path

import pytest
import sympy

from graphc.errors import ShapeError
from graphc.tensor import Size, TensorType, evaluate
from helpers import compile_text, layer, report_of

ROOT = Path(__file__).resolve().parent.parent
FCN = ROOT / "examples" / "fcn_any_size.yaml"


def graphc(*args, cwd=ROOT):
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def value_of(text: str, sizes: dict[str, int]) -> int:
    """A report's expression parsed back (it is sympy's syntax) and evaluated at ``sizes``."""
    symbols = {n: sympy.Symbol(n, integer=True, positive=True) for n in sizes}
    return int(sympy.sympify(text, locals=symbols).subs({symbols[n]: v for n, v in sizes.items()}))


# --- the dim type ---------------------------------------------------------------------------------

def test_conv_arithmetic_over_a_symbol_gives_canonical_floors():
    h = Size("H")
    stride2 = (h + 2 - 3) // 2 + 1  # 3x3, stride 2, padding 1
    assert stride2 == "floor((H + 1)/2)" and isinstance(stride2, Size)
    assert (h + 2 - 1) // 2 == stride2  # 'same' padding's ceil(H/2) is the same dim: a residual add matches
    assert (stride2 + 2 - 3) // 2 + 1 == "floor((H + 3)/4)"  # a floor of a floor folds
    assert (h + 0 - 1) // 1 + 1 == "H"
    assert h - h == 0 and isinstance(h - h, int)
    for n in (1, 2, 7, 224, 225):
        assert evaluate((stride2 + 2 - 3) // 2 + 1, {"H": n}) == ((n + 2 - 3) // 2 + 1 + 2 - 3) // 2 + 1


def test_ints_stay_ints_and_costs_keep_the_sizes_but_count_the_batch_as_one():
    assert TensorType(("N", 3, 4, 4)).numel() == 48
    t = TensorType(("N", 8, (Size("H") + 1) // 2, Size("W")))
    assert t.numel() == "8*W*floor((H + 1)/2)"
    assert evaluate(t.numel(), {"H": 5, "W": 4}) == 8 * 4 * 3


def test_a_comparison_is_decided_where_it_can_be_and_refused_naming_the_size_where_not():
    h = Size("H")
    assert (h + 1) // 2 >= 1
    with pytest.raises(ShapeError, match=r"cannot tell whether floor\(\(H \+ 1\)/2\) - 5 ≥ 1 for every H"):
        _ = (h + 1) // 2 - 5 >= 1


def test_a_size_survives_pickling_with_its_expression():
    d = (Size("H") + 3) // 4
    back = pickle.loads(pickle.dumps(d))
    assert back == d and evaluate(back, {"H": 9}) == 3


# --- compile --------------------------------------------------------------------------------------

def test_compile_shows_expressions_exact_params_and_receptive_fields():
    r = graphc("compile", FCN, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    rows = {row["name"]: row for row in report["layers"]}
    assert report["sizes"] == ["H", "W"]
    assert report["inputs"][0]["shape"] == ["N", 3, "H", "W"]
    assert rows["pool1"]["shape"] == ["N", 8, "floor(H/2)", "floor(W/2)"]
    assert rows["conv2"]["shape"] == ["N", 16, "floor((H + 2)/4)", "floor((W + 2)/4)"]
    assert rows["gap"]["shape"] == ["N", 10]
    assert report["params_total"] == 1594 and isinstance(report["params_total"], int)
    assert rows["conv1"]["macs"] == "216*H*W"
    # receptive fields do not depend on the size; 'same' with stride 2 pads by H mod 2: unknown padding
    assert rows["pool1"]["receptive_field"] == {"size": [4, 4], "stride": [2, 2], "padding": [1, 1]}
    rf = rows["conv2"]["receptive_field"]
    assert (rf["size"], rf["stride"], rf["padding"]) == ([8, 8], [4, 4], [None, None])
    assert "depends on the input size" in rf["padding_note"]
    text = graphc("compile", FCN)
    assert text.returncode == 0, text.stderr
    assert "(N, 16, floor((H + 2)/4), floor((W + 2)/4))" in text.stdout and "8 / 4 / ?" in text.stdout
    assert "MACs:    216*H*W + 1312*floor((H + 2)/4)*floor((W + 2)/4) per example" in text.stdout
    assert "RF pad ?: depends on the input size" in text.stdout


def test_macs_expression_evaluates_to_the_report_of_the_bound_sizes():
    symbolic = json.loads(graphc("compile", FCN, "--json").stdout)
    for h, w in ((32, 48), (31, 17)):
        bound = graphc("compile", FCN, "--json", "--size", f"H={h},W={w}")
        assert bound.returncode == 0, bound.stderr
        concrete = json.loads(bound.stdout)
        assert concrete["sizes"] == []
        for key in ("macs_total", "flops_total", "activation_bytes_total"):
            assert value_of(symbolic[key], {"H": h, "W": w}) == concrete[key], key
        for row, bound_row in zip(symbolic["layers"], concrete["layers"]):
            assert [d if isinstance(d, int) or d == "N" else value_of(d, {"H": h, "W": w}) for d in row["shape"]] == bound_row["shape"]


def test_resnet18_with_a_symbolic_input_bound_by_size_reports_exactly_the_static_spec(tmp_path):
    static = (ROOT / "specs" / "resnet18.yaml").read_text()
    assert "[N, 3, 224, 224]" in static
    (tmp_path / "static").mkdir()
    (tmp_path / "symbolic").mkdir()
    (tmp_path / "static" / "resnet18.yaml").write_text(static)
    (tmp_path / "symbolic" / "resnet18.yaml").write_text(static.replace("[N, 3, 224, 224]", "[N, 3, H, W]"))
    want = graphc("compile", "resnet18.yaml", "--json", cwd=tmp_path / "static")
    got = graphc("compile", "resnet18.yaml", "--json", "--size", "H=224,W=224", cwd=tmp_path / "symbolic")
    assert want.returncode == 0 and got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == json.loads(want.stdout)
    for flags in ((), ("--expand",)):
        text_want = graphc("compile", "resnet18.yaml", *flags, cwd=tmp_path / "static")
        text_got = graphc("compile", "resnet18.yaml", "--size", "H=224,W=224", *flags, cwd=tmp_path / "symbolic")
        assert text_got.stdout == text_want.stdout and text_got.stderr == text_want.stderr
    symbolic = json.loads(graphc("compile", "resnet18.yaml", "--json", cwd=tmp_path / "symbolic").stdout)
    assert symbolic["params_total"] == json.loads(want.stdout)["params_total"] == 11_699_112
    assert value_of(symbolic["macs_total"], {"H": 224, "W": 224}) == json.loads(want.stdout)["macs_total"]
    assert symbolic["outputs"][0]["shape"] == ["N", 1000]


def test_windows_that_do_not_tile_are_reported_for_the_bound_size_only():
    r = graphc("compile", FCN)
    assert "warning" not in r.stderr
    r = graphc("compile", FCN, "--size", "H=31,W=48")
    assert r.returncode == 0 and "'pool1': maxpool2d windows do not tile the input along row" in r.stderr
    assert "along col" not in r.stderr


def test_size_errors_are_located_and_name_the_sizes(tmp_path):
    r = graphc("compile", FCN, "--size", "H=1,W=8")
    assert r.returncode == 65
    assert "fcn_any_size.yaml:16:5: error: maxpool2d 'pool1': output height floor((1 + 0 − 2)/2) + 1 = 0 is below 1" in r.stderr
    assert "Traceback" not in r.stderr
    r = graphc("compile", FCN, "--size", "D=3")
    assert r.returncode == 65 and "--size binds D, which is not a symbolic dim of the spec's inputs" in r.stderr
    r = graphc("compile", FCN, "--size", "H=0")
    assert r.returncode == 2 and "'H=0' is not NAME=SIZE with a positive integer size" in r.stderr
    r = graphc("compile", FCN, "--backward")
    assert r.returncode == 65 and "differentiating needs static sizes" in r.stderr and "--size H=…,W=…" in r.stderr
    assert graphc("compile", FCN, "--backward", "--size", "H=8,W=8").returncode == 0


def test_an_op_that_needs_a_static_size_says_which_symbol(tmp_path):
    spec = tmp_path / "dense.yaml"
    spec.write_text("inputs: {image: {shape: [N, 3, H, 32]}}\n"
                    "layers:\n"
                    "  - {name: conv, op: conv2d, filters: 4, kernel: 3, stride: 2}\n"
                    "  - {name: flat, op: flatten}\n"
                    "  - {name: fc, op: dense, units: 10}\n")
    r = graphc("compile", spec)
    assert r.returncode == 65, r.stderr
    assert "dense.yaml:4:5: error: flatten 'flat':" in r.stderr
    assert "'floor((H + 1)/2) - 1', which depends on the input size H (give H in the spec, or bind it with --size)" in r.stderr
    assert "Traceback" not in r.stderr
    assert graphc("compile", spec, "--size", "H=32").returncode == 0


def test_merged_paths_need_the_same_expression():
    report = report_of("""
        inputs: {image: {shape: [N, 4, H, W]}}
        layers:
          - {name: a, op: conv2d, filters: 4, kernel: 3, stride: 2, padding: 1, inputs: [image]}
          - {name: b, op: conv2d, filters: 4, kernel: 1, stride: 2, inputs: [image]}
          - {name: sum, op: add, inputs: [a, b]}
    """)
    assert layer(report, "sum")["shape"] == ["N", 4, "floor((H + 1)/2)", "floor((W + 1)/2)"]
    with pytest.raises(Exception, match="cannot broadcast"):
        compile_text("""
            inputs: {image: {shape: [N, 4, H, W]}}
            layers:
              - {name: a, op: conv2d, filters: 4, kernel: 3, stride: 2, padding: 1, inputs: [image]}
              - {name: b, op: maxpool2d, kernel: 2, inputs: [image]}
              - {name: sum, op: add, inputs: [a, b]}
        """)


# --- running --------------------------------------------------------------------------------------

def images(path, n, h, w, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    np.savez(path, image=rng.standard_normal((n, 3, h, w)).astype(np.float32), label=rng.integers(0, 10, n))
    return path


def test_run_binds_the_sizes_from_the_inputs_on_both_engines(tmp_path):
    import numpy as np

    for h, w in ((20, 24), (13, 9)):
        feed = images(tmp_path / f"in{h}.npz", 3, h, w)
        outs = {}
        for backend in ("numpy", "onnxruntime"):
            out = tmp_path / f"{backend}{h}.npz"
            r = graphc("run", FCN, "--inputs", feed, "--out", out, "--backend", backend)
            assert r.returncode == 0, r.stderr
            outs[backend] = np.load(out)["logits"]
        assert outs["numpy"].shape == (3, 10)
        np.testing.assert_allclose(outs["onnxruntime"], outs["numpy"], rtol=1e-5, atol=1e-6)


def test_a_size_the_expressions_cannot_take_is_a_located_error_naming_it(tmp_path):
    r = graphc("run", FCN, "--inputs", images(tmp_path / "tiny.npz", 2, 1, 9), "--out", tmp_path / "o.npz")
    assert r.returncode == 65
    assert ("fcn_any_size.yaml:16:5: error: maxpool2d 'pool1' with H=1, W=9 (--inputs): "
            "output height floor((1 + 0 − 2)/2) + 1 = 0 is below 1") in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o.npz").exists()


def test_inputs_naming_one_size_must_agree_on_it(tmp_path):
    import numpy as np

    spec = tmp_path / "two.yaml"
    spec.write_text("inputs: {a: {shape: [N, 2, H, W]}, b: {shape: [N, 2, H, W]}}\n"
                    "layers:\n  - {name: s, op: add, inputs: [a, b]}\n"
                    "  - {name: c, op: conv2d, filters: 2, kernel: 3, stride: 2, padding: 1}\n")
    np.savez(tmp_path / "in.npz", a=np.zeros((1, 2, 8, 6), np.float32), b=np.zeros((1, 2, 7, 6), np.float32))
    r = graphc("run", spec, "--inputs", tmp_path / "in.npz", "--out", tmp_path / "o.npz")
    assert r.returncode == 65 and "'b' has H = 7, but another input has H = 8" in r.stderr, r.stderr


def test_grad_and_train_differentiate_at_the_bound_size(tmp_path):
    import numpy as np

    feed = images(tmp_path / "in.npz", 2, 11, 10)
    r = graphc("grad", FCN, "--inputs", feed, "--out", tmp_path / "g.npz")
    assert r.returncode == 0, r.stderr
    grads = np.load(tmp_path / "g.npz")
    assert grads["grad/conv1.weight"].shape == (8, 3, 3, 3) and np.isfinite(grads["loss"])
    ort = graphc("grad", FCN, "--inputs", feed, "--out", tmp_path / "g_ort.npz", "--backend", "onnxruntime")
    assert ort.returncode == 0, ort.stderr
    np.testing.assert_allclose(np.load(tmp_path / "g_ort.npz")["grad/conv1.weight"], grads["grad/conv1.weight"], rtol=1e-4, atol=1e-5)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x_train=rng.standard_normal((24, 3, 9, 12)).astype(np.float32), y_train=rng.integers(0, 10, 24))
    spec = tmp_path / "fcn.yaml"
    spec.write_text(FCN.read_text() + "train: {data: data.npz, epochs: 1, batch_size: 8}\n")
    r = graphc("train", spec, "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "best.npz").exists()


def test_the_export_keeps_the_named_sizes_and_runs_at_two_sizes(tmp_path):
    import numpy as np
    import onnx

    model = tmp_path / "fcn.onnx"
    params = tmp_path / "params.npz"
    r = graphc("export", FCN, "-o", model)
    assert r.returncode == 0, r.stderr
    image = onnx.load(model).graph.input[0]
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == ["N", 3, "H", "W"]
    for h, w in ((16, 16), (23, 30)):
        feed = images(tmp_path / f"in{h}.npz", 2, h, w, seed=h)
        ours = graphc("run", FCN, "--inputs", feed, "--out", tmp_path / f"numpy{h}.npz", "--save-params", params)
        assert ours.returncode == 0, ours.stderr
        theirs = graphc("run", model, "--inputs", feed, "--out", tmp_path / f"ort{h}.npz")
        assert theirs.returncode == 0, theirs.stderr
        np.testing.assert_allclose(np.load(tmp_path / f"ort{h}.npz")["logits"], np.load(tmp_path / f"numpy{h}.npz")["logits"],
                                   rtol=1e-5, atol=1e-6)


def test_a_lowering_that_needs_a_static_size_is_a_located_export_error(tmp_path):
    spec = tmp_path / "up.yaml"
    spec.write_text("inputs: {image: {shape: [N, 2, H, W]}}\nlayers:\n  - {name: up, op: upsample, scale: 2}\n")
    assert graphc("compile", spec).returncode == 0
    r = graphc("export", spec, "-o", tmp_path / "up.onnx")
    assert r.returncode == 65 and "up.yaml:3:5: error: the ONNX lowering of 'up' needs a static size, got H" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_viz_draws_the_expressions(tmp_path):
    out = tmp_path / "fcn.svg"
    r = graphc("viz", FCN, "-o", out)
    assert r.returncode == 0, r.stderr
    svg = out.read_text()
    assert "N×16×floor((H + 2)/4)×floor((W + 2)/4)" in svg and "216*H*W + 1312*floor((H + 2)/4)*floor((W + 2)/4) MACs" in svg
