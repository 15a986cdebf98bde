"""Benchmark: generate a 1,000-layer spec and time `graphc compile` on it, stage by stage.

    python tools/bench_compile.py [--layers 1000] [--repeat 5]

The spec is written out layer by layer (no blocks, so that loading and validation see every layer),
a mix of convolutions, batchnorms, ReLUs and residual adds on a 32×32 input. The time reported is the
best of ``--repeat`` runs of load → validate → expand → build → shapes, parameters, MACs, receptive
fields → report, in this process (interpreter start-up excluded), as wall time and as CPU time of the
process (the steadier figure on a busy machine), with the cost per layer.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import graphc
from graphc.ir.build import build_graph
from graphc.report import compile_report
from graphc.spec.load import load_spec


def generate(layers: int) -> str:
    lines = ["name: bench", "inputs:", "  image: {shape: [N, 16, 32, 32]}", "layers:"]
    count, unit = 0, 0
    while count < layers:
        p = f"u{unit}_"
        first = "image" if unit == 0 else f"u{unit - 1}_add"
        lines += [
            f"  - {{name: {p}conv1, op: conv2d, filters: 16, kernel: 3, padding: 1, bias: false, inputs: [{first}]}}",
            f"  - {{name: {p}bn, op: batchnorm}}",
            f"  - {{name: {p}relu, op: relu}}",
            f"  - {{name: {p}add, op: add, inputs: [{p}relu, {first}]}}",
        ]
        count += 4
        unit += 1
    lines.append(f"outputs: [u{unit - 1}_add]")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(generate(args.layers))
        best, cpu = {}, {}
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            loaded = load_spec(path)
            t1, c1 = time.perf_counter(), time.process_time()
            graph = build_graph(loaded)
            t2, c2 = time.perf_counter(), time.process_time()
            report = compile_report(graph)
            t3, c3 = time.perf_counter(), time.process_time()
            for key, wall, used in (("load+validate", t1 - t0, c1 - c0), ("expand+build+shapes", t2 - t1, c2 - c1),
                                    ("analysis+report", t3 - t2, c3 - c2), ("total", t3 - t0, c3 - c0)):
                best[key] = min(best.get(key, float("inf")), wall)
                cpu[key] = min(cpu.get(key, float("inf")), used)
    layers = len(report["layers"])
    print(f"graphc {graphc.__version__}: compile of a {layers}-layer spec "
          f"({graph.number_of_nodes()} IR nodes), best of {args.repeat}")
    for key, value in best.items():
        print(f"  {key:<22} {value * 1000:8.1f} ms wall {cpu[key] * 1000:8.1f} ms CPU")
    print(f"  per layer              {best['total'] / layers * 1e6:8.1f} µs wall {cpu['total'] / layers * 1e6:8.1f} µs CPU")


if __name__ == "__main__":
    main()
