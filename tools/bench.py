"""Benchmark: the NumPy interpreter against onnxruntime on the same graphs, side by side in one run.

    python tools/bench.py [--repeat 20] [--workloads mlp_digits,keras_mnist_mlp,lenet5,resnet20_cifar]

For each workload (MLP 64-100-10 at batch 100, MLP 784-500-50-10 at batch 128, LeNet-5 at batch 64,
ResNet-20 at batch 32) it times, as the median of ``--repeat`` runs after a warm-up:

- ``interp fwd``: the interpreter running the forward graph (inference mode);
- ``interp step``: the interpreter running the training graph (forward + loss + backward);
- ``ort fwd``: onnxruntime (CPU provider) running the exported forward graph;
- ``ort step``: onnxruntime running the exported training step (loss and every gradient);

and prints the ratios the targets are stated in, plus achieved GFLOP/s (FLOPs = 2 × MACs of the
forward graph) against the machine's float32 GEMM peak measured in the same run (numpy matmul of
two 2048×2048 matrices). The BLAS library and kernel that numpy uses are reported (threadpoolctl).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import graphc
from graphc.backends.interpreter import Program
from graphc.backends.onnx_export import export_model
from graphc.backends.ort import session
from graphc.backends.run import draw_masks
from graphc.gradcheck import spec_values
from graphc.ir.analysis import costs
from graphc.ir.autodiff import training_graph
from graphc.ir.passes import optimize

SPECS = Path(__file__).resolve().parent.parent / "specs"
WORKLOADS = {"mlp_digits": 100, "keras_mnist_mlp": 128, "lenet5": 64, "resnet20_cifar": 32}


def median_time(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def gemm_peak(repeat: int = 10, n: int = 2048) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    t = min(median_time(lambda: a @ b, 3) for _ in range(max(1, repeat // 3)))
    return 2 * n**3 / t / 1e9


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    parts = []
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            parts.append(f"{lib.get('internal_api')} {lib.get('version')} kernel={lib.get('architecture')} threads={lib.get('num_threads')}")
    return "; ".join(parts) or "no BLAS found"


def bench(name: str, batch: int, repeat: int) -> dict:
    graph = graphc.compile_spec(SPECS / f"{name}.yaml")
    training, _ = optimize(training_graph(graph))
    values = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in spec_values(training, batch, 0).items()}
    values.update(draw_masks(training, {"N": batch}, 0))
    outputs = list(graph.graph["outputs"].values())
    step_targets = [training.graph["loss"], *training.graph["grads"].values(), *training.graph.get("updates", {}).values()]
    forward, step = Program(graph, outputs), Program(training, step_targets)
    macs = sum(c.macs for c in costs(graph).values()) * batch
    row = {"workload": f"{name} b{batch}", "gflop": 2 * macs / 1e9}
    row["interp fwd"] = median_time(lambda: forward.run(values), repeat)
    row["interp step"] = median_time(lambda: step.run(values), repeat)
    fwd_sess, provider = session(export_model(graph, outputs), "cpu")
    fwd_feeds = {i.name: values[i.name] for i in fwd_sess.get_inputs()}
    row["ort fwd"] = median_time(lambda: fwd_sess.run(None, fwd_feeds), repeat)
    try:
        step_sess, _ = session(export_model(training, step_targets), "cpu")
        step_feeds = {i.name: values[i.name] for i in step_sess.get_inputs()}
        row["ort step"] = median_time(lambda: step_sess.run(None, step_feeds), repeat)
    except NotImplementedError as e:  # an op without a lowering yet
        row["ort step"] = float("nan")
        row["note"] = str(e)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    args = ap.parse_args()
    peak = gemm_peak()
    print(f"graphc {graphc.__version__}; numpy {np.__version__}; BLAS: {blas_info()}")
    print(f"float32 GEMM peak (2048³ matmul): {peak:.1f} GFLOP/s")
    header = f"{'workload':<22}{'interp fwd':>11}{'ort fwd':>10}{'fwd ratio':>10}{'interp step':>12}{'step/fwd':>9}{'ort step':>10}{'ort/interp step':>16}{'fwd GFLOP/s':>12}{'% peak':>8}{'ort % peak':>11}"
    print(header)
    print("─" * len(header))
    for name in args.workloads.split(","):
        r = bench(name, WORKLOADS[name], args.repeat)
        gflops = r["gflop"] / r["interp fwd"]
        print(f"{r['workload']:<22}{r['interp fwd'] * 1e3:>9.2f}ms{r['ort fwd'] * 1e3:>8.2f}ms{r['interp fwd'] / r['ort fwd']:>9.2f}×"
              f"{r['interp step'] * 1e3:>10.2f}ms{r['interp step'] / r['interp fwd']:>8.2f}×{r['ort step'] * 1e3:>8.2f}ms"
              f"{r['ort step'] / r['interp step']:>15.2f}×{gflops:>12.1f}{100 * gflops / peak:>7.1f}%"
              f"{100 * r['gflop'] / r['ort fwd'] / peak:>10.1f}%")
        if "note" in r:
            print(f"  ({r['note']})")
    print("targets: fwd ratio ≤ 2.5×; step/fwd ≤ 3×; resnet20 fwd ≥ 50 % of peak; ort/interp step ≤ 0.6× on conv nets")


if __name__ == "__main__":
    main()
