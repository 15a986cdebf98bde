"""Whole-process start-up of graphc commands, repeated and interleaved (hyperfine-like): wall and CPU
time (user + system of the child) per command, min and median.

    python tools/bench_startup.py [--runs 10] [--baseline DIR] [COMMAND ...]

Each COMMAND is a graphc argument list ("compile specs/lenet5.yaml"); the default is that one. With
``--baseline DIR`` (another checkout of graphc, e.g. ``git worktree add /tmp/base main``) every
command also runs on that tree, in alternating turns, and the ratio this/baseline is printed. Both
run ``python -m graphc.cli`` from their own tree with compiled bytecode allowed (as an installed
package has it), so ``PYTHONDONTWRITEBYTECODE`` is dropped for the children. On a busy machine the
CPU time is the steadier figure: wall time adds the wait for a core.

A ``train`` command runs into a fresh temporary ``--out`` each time, and its line adds the training
time the run reports (``wall_seconds`` of metrics.json) and the ratio of the whole process's wall time
to it (issue 16's target for ``train specs/mlp_digits.yaml``: at most 1.5×).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str], cwd: Path) -> tuple[float, float, float | None]:
    """(wall, CPU, the training time a ``train`` command reports, else None) of one run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        wall, cpu = _run(argv + (["--out", str(out)] if argv[:1] == ["train"] else []), cwd)
        reported = json.loads((out / "metrics.json").read_text())["wall_seconds"] if argv[:1] == ["train"] else None
    return wall, cpu, reported


def _run(argv: list[str], cwd: Path) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(cwd)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "graphc.cli", *argv], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("commands", nargs="*", default=["compile specs/lenet5.yaml"])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--baseline", type=Path, help="another graphc checkout to time side by side")
    args = p.parse_args()
    trees = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    results = {(c, t): ([], [], []) for c in args.commands for t in trees}
    for command in args.commands:  # one warm-up each: writes the bytecode caches
        for tree in trees.values():
            timed(command.split(), tree)
    for _ in range(args.runs):
        for command in args.commands:
            for name, tree in trees.items():
                for series, value in zip(results[command, name], timed(command.split(), tree)):
                    series.append(value)
    print(f"load average {os.getloadavg()[0]:.1f}; {args.runs} runs each, interleaved")
    for command in args.commands:
        for name in trees:
            w, c, reported = results[command, name]
            print(f"{name:>8}  wall min {min(w):.3f} s  median {statistics.median(w):.3f} s   "
                  f"cpu min {min(c):.3f} s  median {statistics.median(c):.3f} s   graphc {command}")
            if reported[0] is not None:
                ratios = [a / b for a, b in zip(w, reported)]
                print(f"{'':>8}  reported training time median {statistics.median(reported):.3f} s   "
                      f"process wall / reported: median {statistics.median(ratios):.2f}×  max {max(ratios):.2f}×")
        if args.baseline:
            (w, c, _), (bw, bc, _) = results[command, "this"], results[command, "baseline"]
            print(f"{'ratio':>8}  wall median {statistics.median(w) / statistics.median(bw):.2f}×   "
                  f"cpu median {statistics.median(c) / statistics.median(bc):.2f}×   this/baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
