"""Benchmark: `graphc train` with the default command on the two digits specs, on both backends,
side by side in one run.

    python tools/bench_train.py [--repeat 1] [--specs mlp_digits,digits_cnn]

Each spec trains with its own ``train:`` section (the same as ``graphc train specs/<spec>.yaml
--backend <backend>``), in this process, into a temporary run directory. Printed per spec and
backend: epochs, steps, the wall time of the whole run (data, compile, training, evaluation — the
``wall_seconds`` of metrics.json), the time spent in the epochs alone, and the test accuracy of the
best model. With ``--repeat N`` the fastest of N runs is shown (the accuracy is the same every time:
runs are deterministic).

Reference point (stated in issue 5, not measured here: PyTorch is not installed): PyTorch trains the
same 64-100-10 MLP to about 97 % test accuracy in 0.3–0.5 s on this 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
from pathlib import Path

from graphc.train.loop import Options, train
from graphc.version import __version__

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"mlp_digits": 97.5, "digits_cnn": 98.0}


def one_run(spec: Path, backend: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            code = train(Options(spec=str(spec), out=str(Path(tmp) / "run"), backend=backend, device="cpu", progress=False))
        if code != 0:
            raise SystemExit(f"graphc train {spec} --backend {backend} failed with exit code {code}")
        return json.loads((Path(tmp) / "run" / "metrics.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=1, help="runs per spec and backend; the fastest is shown (default 1)")
    p.add_argument("--specs", default="mlp_digits,digits_cnn")
    args = p.parse_args()
    print(f"graphc {__version__}: graphc train, default command per spec (fastest of {args.repeat})")
    print(f"{'spec':<12} {'backend':<12} {'epochs':>6} {'steps':>6} {'wall s':>7} {'epochs s':>8} {'test acc':>9} {'target':>7}")
    for stem in args.specs.split(","):
        spec = ROOT / "specs" / f"{stem}.yaml"
        for backend in ("numpy", "onnxruntime"):
            runs = [one_run(spec, backend) for _ in range(args.repeat)]
            best = min(runs, key=lambda m: m["wall_seconds"])
            epochs_s = sum(r["seconds"] for r in best["epochs"])
            acc = 100 * best["test_accuracy"]
            target = TARGETS.get(stem)
            mark = "" if target is None else ("ok" if acc >= target else "MISSED")
            print(f"{stem:<12} {backend:<12} {best['epochs_run']:>6} {best['steps']:>6} {best['wall_seconds']:>7.2f} "
                  f"{epochs_s:>8.2f} {acc:>8.2f}% {mark:>7}")
    print("reference (issue 5, not measured here): PyTorch trains the 64-100-10 MLP to about 97 % in 0.3–0.5 s on this machine")


if __name__ == "__main__":
    main()
