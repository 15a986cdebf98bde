"""One name per setting across the spec and the CLI: an option that sets a spec field has the field's name."""

import subprocess
from pathlib import Path

from graphc.cli import parser
from graphc.spec.models import TrainDecl

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "mlp_digits.yaml"

#: Options of subcommands that set something the spec's ``train:`` section also sets.
HYPERPARAMETERS = {"momentum", "rho", "beta1", "beta2", "eps", "lr", "decay", "optimizer", "seed", "epochs", "batch_size"}


def _options(name):
    sub = next(a for a in parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices[name]
    return {o.lstrip("-").replace("-", "_"): a for a in sub._actions for o in a.option_strings if o.startswith("--")}


def test_export_optimizer_options_are_the_spec_fields():
    options = _options("export")
    hyper = {name for name, action in options.items() if name in HYPERPARAMETERS and "deprecated" not in (action.help or "")}
    assert hyper == {"momentum", "rho", "beta1", "beta2", "eps", "optimizer", "seed"}
    assert hyper <= set(TrainDecl.model_fields)


def graphc(*args):
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_decay_is_a_deprecated_alias_of_rho(tmp_path):
    new, old, default = tmp_path / "new.onnx", tmp_path / "old.onnx", tmp_path / "default.onnx"
    common = ["--training", "--optimizer", "rmsprop", "--no-params"]
    r = graphc("export", SPEC, "-o", new, *common, "--rho", "0.5")
    assert r.returncode == 0 and "is deprecated" not in r.stderr, r.stderr
    r = graphc("export", SPEC, "-o", old, *common, "--decay", "0.5")
    assert r.returncode == 0, r.stderr
    assert "--decay is deprecated, use --rho" in r.stderr
    assert graphc("export", SPEC, "-o", default, *common).returncode == 0
    assert new.read_bytes() == old.read_bytes() != default.read_bytes()
