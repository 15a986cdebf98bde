"""Start-up: a command imports what it uses and nothing more (README, Performance). Checked by the
modules the real command imports (``python -X importtime`` lists each one), never by a timing."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: the libraries of other commands: the ONNX path, plots, the digits' old loader, the tuner's cluster,
#: and sympy, which only symbolic spatial sizes (an input [N, 3, H, W]) need
HEAVY = ("onnx", "onnxruntime", "matplotlib", "sklearn", "scipy", "dask", "distributed", "torch", "pandas", "sympy")


def imported_by(*args) -> tuple[set[str], subprocess.CompletedProcess]:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "graphc.cli", *map(str, args)], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    modules = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert len(modules) > 20, r.stderr[-2000:]
    return modules - {"package"}, r  # "package" is importtime's header row


def tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_compile_imports_neither_other_commands_nor_their_libraries(tmp_path):
    out = tmp_path / "report.txt"
    modules, r = imported_by("compile", "specs/lenet5.yaml", "-o", out)
    assert r.returncode == 0 and "conv1" in out.read_text()
    assert {"graphc.ir.build", "graphc.ops.conv", "networkx", "pydantic", "yaml"} <= modules  # the command really ran
    assert not tops(modules) & set(HEAVY), sorted(tops(modules) & set(HEAVY))
    others = sorted(m for m in modules if m.startswith(("graphc.backends", "graphc.train.", "graphc.tune.", "graphc.gradcheck", "graphc.ir.autodiff"))
                    and m not in ("graphc.train.command", "graphc.tune.command"))
    assert not others, others  # only the two subcommands' argument definitions


def test_sympy_comes_only_with_a_symbolic_size(tmp_path):
    modules, r = imported_by("compile", "examples/fcn_any_size.yaml", "-o", tmp_path / "report.txt")
    assert r.returncode == 0 and "sympy" in tops(modules)
    assert not tops(modules) & (set(HEAVY) - {"sympy"}), sorted(tops(modules) & set(HEAVY))


def test_help_imports_no_compiler():
    modules, r = imported_by("--help")
    assert r.returncode == 0 and "compile" in r.stdout
    assert not tops(modules) & {"networkx", "pydantic", "yaml", *HEAVY}, sorted(tops(modules) & {"networkx", "pydantic", "yaml", *HEAVY})


def test_training_on_the_digits_imports_no_scikit_learn_scipy_or_matplotlib(tmp_path):
    """The digits ship with graphc and the split is drawn in NumPy (tests/test_train_data.py);
    curves.png is drawn by graphc.chart."""
    modules, r = imported_by("train", "specs/mlp_digits.yaml", "--set", "train.epochs=1", "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "run" / "curves.png").exists()
    assert not tops(modules) & {"sklearn", "scipy", "matplotlib", "onnx", "onnxruntime", "dask", "torch"}, sorted(tops(modules) & set(HEAVY))
