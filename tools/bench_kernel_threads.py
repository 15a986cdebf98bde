"""Benchmark: the interpreter's training step with its elementwise kernels split over threads, against
the same step with them on one thread, interleaved in one process (``graphc/ops/threads.py``).

    python tools/bench_kernel_threads.py [--rounds 8] [--workloads lenet5_relu,resnet20_cifar]

BLAS keeps its 2 threads (``--threads``) in both; only ``graphc.ops.threads.COUNT`` changes between
turns (1, then ``--threads``), so that the machine's drift hits both alike. Each turn settles for 0.1 s
then times 3 steps; medians of all timed steps. ``OPENBLAS_THREAD_TIMEOUT`` is 16 unless set (as in
``bench_peers.py``; OpenBLAS reads it as NumPy loads): ``OPENBLAS_THREAD_TIMEOUT=28``, OpenBLAS's
default, shows the split against idle workers that busy-wait on the other cores after every GEMM.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

THREADS = 2
for i, a in enumerate(sys.argv):
    if a == "--threads" and i + 1 < len(sys.argv):
        THREADS = int(sys.argv[i + 1])
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(THREADS)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_peers as peers  # noqa: E402 - after the thread variables, which BLAS reads when it loads
import numpy as np  # noqa: E402

from graphc.ops import threads  # noqa: E402


def step_program(name: str):
    """The interpreter's training step (forward, loss, backward, SGD-momentum) of a workload, and its feeds."""
    batch = peers.WORKLOADS[name]
    training = peers.with_optimizer(peers.optimize(peers.training_graph(peers.load_workload(name)))[0], "momentum")
    values = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in peers.spec_values(training, batch, 0).items()}
    values.update(peers.initial_state(training))
    values["lr"] = np.array(peers.LR, np.float32)
    return peers.Program(training, [training.graph["loss"], *training.graph["step"].values()]), values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--workloads", default=",".join(peers.WORKLOADS))
    ap.add_argument("--threads", type=int, default=2, help="BLAS threads, and kernel threads when split (default 2)")
    args = ap.parse_args()
    print(f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT')}; {args.threads} BLAS threads; "
          f"load average at start {os.getloadavg()[0]:.2f}")
    for name in args.workloads.split(","):
        program, values = step_program(name)
        times: dict[int, list[float]] = {1: [], args.threads: []}
        for _ in range(args.rounds):
            for count in times:
                threads.set_count(count)
                settle = time.perf_counter() + 0.1
                while time.perf_counter() < settle:
                    program.run(values)
                for _ in range(3):
                    t = time.perf_counter()
                    program.run(values)
                    times[count].append(time.perf_counter() - t)
        one, split = (statistics.median(times[c]) * 1e3 for c in times)
        print(f"{name:<18} kernels on one thread {one:9.2f} ms   split {split:9.2f} ms   split/one {split / one:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
