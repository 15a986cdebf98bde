"""Benchmark: generate N-layer specs and time their compilation in this process, stage by stage.

    python tools/bench_compile.py [--layers 1000 10000] [--repeat 5] [--blocks]

The spec is written out layer by layer (no blocks, so that loading and validation see every layer),
a mix of convolutions, batchnorms, ReLUs and residual adds on a 32×32 input. With ``--blocks`` the
same network is one block of those four layers with ``repeat: N/4`` (one instance per unit: what
the expansion and the report's instance rows cost). One run is load →
validate → expand → build → shapes, parameters, MACs, receptive fields, warnings → report, in this
process (interpreter start-up excluded). The sizes take turns (1,000, 10,000, 1,000, …), so that a
change in the machine's load hits them alike; before each run the previous run's results are freed
and collected, so that no run pays for the last one's garbage. Printed per size: the median over
``--repeat`` runs of wall time and of the process's CPU time (the steadier figure on a busy machine),
per stage and per layer, and the growth of the CPU cost per layer from the first size to each other.

Beside it, as the machine's own measure of "flat": the same growth for a plain Python walk of as
many small dict nodes as the IR has (no graphc code; the same number of operations per node at
every size). Where graphc does the same work per layer at every size, what growth remains is that
of touching a larger working set, and this line shows how much of it the machine imposes.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

import graphc
from graphc.ir.build import build_graph
from graphc.report import compile_report
from graphc.spec.load import load_spec

STAGES = ("load+validate", "expand+build+shapes", "analysis+report", "total")


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


def generate_blocks(layers: int) -> str:
    return "\n".join([
        "name: bench_blocks", "inputs:", "  image: {shape: [N, 16, 32, 32]}", "blocks:", "  unit:", "    layers:",
        "      - {name: conv1, op: conv2d, filters: 16, kernel: 3, padding: 1, bias: false}",
        "      - {name: bn, op: batchnorm}", "      - {name: relu, op: relu}", "      - {name: add, op: add, inputs: [relu, x]}",
        "layers:", f"  - {{name: stack, block: unit, repeat: {max(1, layers // 4)}}}"]) + "\n"


def run_once(path: Path) -> tuple[dict[str, tuple[float, float]], int, int]:
    """(stage → (wall, CPU) seconds, spec layers after expansion, IR nodes) of one compile of ``path``."""
    t0, c0 = time.perf_counter(), time.process_time()
    loaded = load_spec(path)
    t1, c1 = time.perf_counter(), time.process_time()
    graph = build_graph(loaded)
    t2, c2 = time.perf_counter(), time.process_time()
    report = compile_report(graph)  # kept until the times are taken: freeing it is not compiling
    t3, c3 = time.perf_counter(), time.process_time()
    times = dict(zip(STAGES, ((t1 - t0, c1 - c0), (t2 - t1, c2 - c1), (t3 - t2, c3 - c2), (t3 - t0, c3 - c0))))
    return times, len(graph.graph["layers"]), graph.number_of_nodes()


def reference_walk(nodes: int) -> float:
    """CPU seconds of three passes over ``nodes`` dict nodes, each reading its input's attributes."""
    graph = {}
    for i in range(nodes):
        graph[f"n{i}"] = {"inputs": (f"n{i - 1}",), "type": (i, 16, 32, 32), "attrs": {"k": i}}
    start = time.process_time()
    for _ in range(3):
        total = 0
        for a in graph.values():
            for src in a["inputs"]:
                if src in graph:
                    total += graph[src]["type"][0] + a["attrs"]["k"]
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--blocks", action="store_true", help="the layers as one block repeated (see above)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for n in args.layers:
            paths[n] = Path(tmp) / f"bench{n}.yaml"
            paths[n].write_text((generate_blocks if args.blocks else generate)(n))
        for n in args.layers:
            run_once(paths[n])  # op validators and caches built once, as in any process past its first spec
        runs: dict[int, list[dict]] = {n: [] for n in args.layers}
        sizes, reference = {}, {}
        for _ in range(args.repeat):
            for n in args.layers:
                gc.collect()  # the previous run's garbage is collected outside the timing
                times, rows, nodes = run_once(paths[n])
                runs[n].append(times)
                sizes[n] = (rows, nodes)
                reference.setdefault(n, []).append(reference_walk(nodes) / rows)
    print(f"graphc {graphc.__version__} ({graphc.__file__}): compile in process{', block repeated' if args.blocks else ''}, "
          f"median of {args.repeat} runs, "
          f"load average {os.getloadavg()[0]:.1f}")
    first = ref_first = None
    for n in args.layers:
        rows, nodes = sizes[n]
        med = {k: (statistics.median(r[k][0] for r in runs[n]), statistics.median(r[k][1] for r in runs[n])) for k in STAGES}
        per_layer = med["total"][1] / rows
        first = first or per_layer
        print(f"{rows}-layer spec ({nodes} IR nodes)")
        for key in STAGES:
            print(f"  {key:<22} {med[key][0] * 1000:8.1f} ms wall {med[key][1] * 1000:8.1f} ms CPU")
        print(f"  per layer              {med['total'][0] / rows * 1e6:8.1f} µs wall {per_layer * 1e6:8.1f} µs CPU"
              f"   ({per_layer / first:.2f}× the first size's per layer)")
        ref = statistics.median(reference[n])
        ref_first = ref_first or ref
        print(f"  reference dict walk    {ref * 1e6:8.2f} µs CPU per layer   ({ref / ref_first:.2f}× the first size's per layer)")


if __name__ == "__main__":
    main()
