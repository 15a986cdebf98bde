"""Benchmark: graphc against PyTorch eager (CPU) and against PyTorch's own ONNX export, side by side in one run.

    pip install -e '.[bench]'        # PyTorch's CPU wheel: not a dependency of graphc or of its tests
    python tools/bench_peers.py [--rounds 10] [--workloads mlp_digits,keras_mnist_mlp,lenet5_relu,resnet20_cifar] [--no-rss]
    python tools/bench_peers.py --ort-levels     # graphc's graphs on onnxruntime: ORT_ENABLE_ALL against EXTENDED
    python tools/bench_peers.py --static-batch   # the exported graphs with the batch fixed (graphc export --static-batch)
    python tools/bench_peers.py --forward-graphs # graphc's and torch.onnx.export's forward graphs after onnxruntime's optimiser
    python tools/bench_peers.py --threads 1 --cpu-time --engines "interp step,torch step" --no-rss

Workloads (batch): MLP 64-100-10 (100), MLP 784-500-50-10 (128), LeNet-5 on 28×28 with ReLU instead of
tanh (64; ``specs/lenet5.yaml`` with ``op: tanh`` read as ``op: relu``), ResNet-20 CIFAR (32). Both
engines get the same network, the same weights and the same batch: the PyTorch model is built from
graphc's forward graph (``torch.addmm`` for a dense layer, ``F.conv2d``, ``F.batch_norm``, ``F.max_pool2d``,
``F.cross_entropy``…, with graphc's initial parameters as its ``nn.Parameter``s), and its first loss
is checked against graphc's.

Timed interleaved, round by round (so that the machine's drift hits every engine alike): in each of
``--rounds`` rounds every engine settles (runs untimed for 0.15 s) then is timed 3 times; the median
of all its timed calls is shown. float32 everywhere, 2 threads everywhere (``--threads N``: N; with
``--threads 1``, ``--cpu-time`` times each call by the process's CPU time, the steadier figure of the
work done when other processes share the cores; ``--engines`` times a subset):

- ``interp step``: graphc's NumPy interpreter running one training step: forward, loss, backward
  and the SGD-momentum update (``graphc.with_optimizer(…, "momentum", grads=False)``, as ``graphc train`` builds it);
- ``ort step``: the same step exported (``graphc export --training --optimizer momentum --no-grads``) on onnxruntime;
- ``torch step``: PyTorch eager: ``zero_grad``, forward, loss, ``backward()``, ``SGD(momentum=0.9).step()``;
- ``ort fwd``: graphc's exported forward graph (inference mode) on onnxruntime;
- ``torch-onnx fwd``: ``torch.onnx.export`` of the same network (eval mode) on the same onnxruntime,
  with the same session options (``graphc.backends.ort.session``).

Ratios < 1 mean graphc is faster. ``--forward-graphs`` compares the two exported forward graphs
as onnxruntime runs them (after its optimiser, at graphc's level for forward graphs, one thread):
the same nodes up to names (op type, attributes, the shapes of their weights), or the nodes only one
of them has; then both timed (by CPU time with ``--threads 1``). Then, unless ``--no-rss``, the peak resident memory of the ResNet-20
training step, each engine in a subprocess of its own (``--rss ENGINE``): the process's peak RSS and
its growth over the RSS before the first step.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path



def _threads_arg(argv: list[str]) -> int | None:
    """``--threads N`` from the command line, read before NumPy loads (BLAS takes its thread count
    from the environment then)."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return None


THREADS = _threads_arg(sys.argv) or 2
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    if _threads_arg(sys.argv):
        os.environ[var] = str(THREADS)
    else:
        os.environ.setdefault(var, str(THREADS))

import numpy as np  # noqa: E402 - after the thread variables, which BLAS reads when it loads

import graphc  # noqa: E402
from graphc.backends.interpreter import Program  # noqa: E402
from graphc.backends.onnx_export import forward_model, training_model, training_outputs  # noqa: E402
from graphc.backends.ort import session  # noqa: E402
from graphc.gradcheck import spec_values  # noqa: E402
from graphc.ir.autodiff import training_graph  # noqa: E402
from graphc.ir.graph import topo_order, with_static_batch  # noqa: E402
from graphc.ir.passes import optimize  # noqa: E402
from graphc.train.optimizers import initial_state, with_optimizer  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"
WORKLOADS = {"mlp_digits": 100, "keras_mnist_mlp": 128, "lenet5_relu": 64, "resnet20_cifar": 32}
LR, MOMENTUM = 0.01, 0.9


def load_workload(name: str):
    """graphc's forward graph for a workload name (``lenet5_relu``: LeNet-5 with ReLU activations)."""
    if name == "lenet5_relu":
        path = SPECS / "lenet5.yaml"
        return graphc.compile_spec(path, path.read_text().replace("op: tanh", "op: relu"))
    return graphc.compile_spec(SPECS / f"{name}.yaml")


class TorchFromGraph:
    """A PyTorch network computing graphc's forward graph ``graph`` op by op, with ``params`` as its
    parameters (and batchnorm running statistics as buffers)."""

    def __init__(self, graph, params: dict[str, np.ndarray]):
        import torch

        self.graph = graph
        self.order = list(topo_order(graph))
        self.tensors = {}
        for n in self.order:
            op = graph.nodes[n]["op"]
            if op.kind == "param":
                t = torch.tensor(params[n])
                self.tensors[n] = torch.nn.Parameter(t) if op.trainable else t
        self.params = [t for t in self.tensors.values() if isinstance(t, torch.nn.Parameter)]
        self.training = True
        self.needed = {}

    def run(self, feeds: dict, target: str):
        import torch
        import torch.nn.functional as F

        g, v = self.graph, dict(self.tensors)
        v.update(feeds)
        if target not in self.needed:
            self.needed[target] = _ancestors(g, target)
        matmuls, needed = {}, self.needed[target]
        for n in self.order:
            if n not in needed:
                continue
            a = g.nodes[n]
            op, xs = a["op"], a["inputs"]
            if n in v:
                continue
            k = op.kind
            args = [v.get(x) for x in xs]
            if k == "matmul":
                matmuls[n] = (xs, op)
                v[n] = None  # computed with its bias below (as nn.Linear does: one addmm)
                continue
            if k == "add" and xs[0] in matmuls and g.nodes[xs[1]]["op"].kind == "param":
                (x, w), mop = matmuls[xs[0]]
                v[n] = torch.addmm(args[1], v[x], v[w].T if mop.transpose_b else v[w])
            elif k == "add":
                v[n] = args[0] + args[1]
            elif k == "relu":
                v[n] = F.relu(args[0])
            elif k == "sigmoid":
                v[n] = torch.sigmoid(args[0])
            elif k == "tanh":
                v[n] = torch.tanh(args[0])
            elif k == "conv2d":
                v[n] = F.conv2d(args[0], args[1], args[2] if op.bias else None, op.stride, op.padding, op.dilation, op.groups)
            elif k == "batchnorm":
                x, gamma, beta, mean, var = args
                v[n] = F.batch_norm(x, mean, var, gamma, beta, self.training, 1 - op.momentum, op.eps)
            elif k == "maxpool2d":
                v[n] = F.max_pool2d(args[0], op.kernel, op.stride, op.padding, op.dilation, op.ceil_mode)
            elif k == "flatten":
                v[n] = torch.flatten(args[0], op.axis)
            elif k == "global_avgpool":
                v[n] = args[0].mean((2, 3))
            elif k == "softmax_cross_entropy":
                v[n] = F.cross_entropy(args[0], args[1])
            elif k == "l2_penalty":
                v[n] = op.strength / 2 * sum((w * w).sum() for w in args)
            else:
                raise NotImplementedError(f"bench_peers: no PyTorch rendering of op {k} (node {n})")
        return v[target]


def setup(name: str, batch: int, only: str | list[str] | None = None, static_batch: bool = False) -> dict:
    """The timed engines of one workload (or only the one or ones named), built but not yet run. With
    both graphc's interpreter and PyTorch among them, first checks that they compute the same first
    loss. PyTorch is imported only for its own engines (the peak-memory subprocesses of the others do
    not carry it). ``static_batch``: graphc's graphs with the batch fixed (``graphc export --static-batch``)."""
    graph = load_workload(name)
    if static_batch:
        graph = with_static_batch(graph, batch)
    training = with_optimizer(optimize(training_graph(graph))[0], "momentum", grads=False)  # as graphc train builds it
    values = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in spec_values(training, batch, 0).items()}
    values.update(initial_state(training))
    values["lr"] = np.array(LR, np.float32)
    params = {n: values[n] for n, a in graph.nodes(data=True) if a["op"].kind == "param"}
    data = {n: values[n] for n, a in graph.nodes(data=True) if a["op"].kind == "input"}
    loss = training.graph["loss"]
    logits = graph.graph["outputs"][next(iter(graph.graph["outputs"]))]
    inputs_order = [n for n in data if n in _ancestors(graph, logits)]

    def ort_engine(model, feeds):
        sess, _ = session(model, "cpu", threads=THREADS)
        wanted = {k: feeds[k] for k in (i.name for i in sess.get_inputs())}

        def run():
            return sess.run(None, wanted)
        run.model, run.again = model, lambda: ort_engine(model, feeds)  # for --forward-graphs: the graph, a second session
        return run

    def interp_step():
        program = Program(training, [loss, *training.graph["step"].values()])
        return lambda: program.run(values)

    torch_parts = {}

    def torch_net():
        import torch

        if not torch_parts:
            torch_parts["net"] = TorchFromGraph(graph, params)
            torch_parts["feeds"] = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items()}
        return torch_parts["net"], torch_parts["feeds"]

    def torch_step():
        import torch

        net, torch_feeds = torch_net()
        opt = torch.optim.SGD(net.params, lr=LR, momentum=MOMENTUM)

        def one_step():
            opt.zero_grad(set_to_none=True)
            out = net.run(torch_feeds, graph.graph["loss"])
            out.backward()
            opt.step()
            return out
        return one_step

    def torch_onnx_fwd():
        import torch

        net, torch_feeds = torch_net()

        class Forward(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.weights = torch.nn.ParameterList(net.params)  # parameters, not traced constants

            def forward(self, *xs):
                return net.run(dict(zip(inputs_order, xs)), logits)

        net.training, buffer = False, io.BytesIO()
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter: no onnxscript needed
        dynamic = {} if static_batch else {n: {0: "N"} for n in inputs_order + ["logits"]}
        torch.onnx.export(Forward(), tuple(torch_feeds[n] for n in inputs_order), buffer, input_names=inputs_order,
                          output_names=["logits"], dynamo=False, dynamic_axes=dynamic)
        net.training = True
        return ort_engine(buffer.getvalue(), data)

    factories = {
        "interp step": interp_step,
        "ort step": lambda: ort_engine(training_model(training), values),
        "torch step": torch_step,
        "ort fwd": lambda: ort_engine(forward_model(graph, params), data),
        "torch-onnx fwd": torch_onnx_fwd,
    }
    if isinstance(only, str):
        return {only: factories[only]()}
    engines = {k: make() for k, make in factories.items() if not only or k in only}
    if "interp step" not in engines or "torch step" not in engines:
        return engines
    # the same network and weights: the first losses agree (before either engine has stepped)
    g_loss = float(engines["interp step"]()[loss])
    t_loss = float(engines["torch step"]().detach())
    if not abs(g_loss - t_loss) <= 1e-4 * max(1.0, abs(g_loss)):
        raise SystemExit(f"{name}: graphc's loss {g_loss} and PyTorch's {t_loss} differ: not the same network")
    return engines


def _ancestors(graph, node):
    import networkx as nx

    return nx.ancestors(graph, node) | {node}


def interleaved(engines: dict, rounds: int, per_turn: int = 3, settle: float = 0.15, clock=time.perf_counter) -> dict[str, float]:
    """Median seconds per engine, the engines taking turns within each round: in its turn an engine
    runs untimed for ``settle`` seconds, then ``per_turn`` timed calls. The settling is needed because
    an engine's idle threads go on spinning after its last call (OpenBLAS for up to 2²⁸ cycles, OpenMP
    and onnxruntime pools for shorter), and on two cores they would be timed against the next engine.
    ``clock`` times the calls (``time.process_time``: CPU time, for one thread)."""
    times = {k: [] for k in engines}
    for _ in range(rounds):
        for k, fn in engines.items():
            t_end = time.perf_counter() + settle
            fn()
            while time.perf_counter() < t_end:
                fn()
            for _ in range(per_turn):
                t = clock()
                fn()
                times[k].append(clock() - t)
    return {k: statistics.median(ts) for k, ts in times.items()}


def rss_child(engine: str, name: str, batch: int, static_batch: bool, steps: int = 10) -> None:
    """In this process alone: one engine's training steps; print peak RSS and its growth (MB) as JSON."""
    if engine == "torch":
        import torch

        torch.set_num_threads(THREADS)
    fn = setup(name, batch, only=f"{engine} step", static_batch=static_batch)[f"{engine} step"]
    before = _status_mb("VmRSS")
    for _ in range(steps):
        fn()
    print(json.dumps({"engine": engine, "peak_mb": _status_mb("VmHWM"), "before_mb": before}))


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmHWM: peak RSS of this program, which,
    unlike getrusage's ru_maxrss, does not inherit the parent's peak across fork and exec)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def ort_levels(workloads: list[str], rounds: int) -> None:
    """graphc's exported forward graph and training step at onnxruntime's ALL and EXTENDED levels."""
    levels = ("ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED")
    print(f"graphc on onnxruntime, median of {rounds} interleaved rounds × 3 calls; ALL/EXTENDED < 1: ALL faster")
    print(f"{'workload':<22}{'fwd ALL':>10}{'fwd EXT':>10}{'ALL/EXT':>9}{'step ALL':>11}{'step EXT':>11}{'ALL/EXT':>9}")
    for name in workloads:
        graph = load_workload(name)
        batch = WORKLOADS[name]
        training = with_optimizer(optimize(training_graph(graph))[0], "momentum", grads=False)  # as graphc train builds it
        values = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in spec_values(training, batch, 0).items()}
        values.update(initial_state(training))
        values["lr"] = np.array(LR, np.float32)
        params = {n: values[n] for n, a in graph.nodes(data=True) if a["op"].kind == "param"}
        engines = {}
        for kind, model in (("fwd", forward_model(graph, params)), ("step", training_model(training))):
            for level in levels:
                sess, _ = session(model, "cpu", optimization=level, threads=THREADS)
                feeds = {i.name: values[i.name] for i in sess.get_inputs()}
                engines[f"{kind} {level}"] = lambda sess=sess, feeds=feeds: sess.run(None, feeds)
        m = interleaved(engines, rounds)
        a, e = (f"fwd {lv}" for lv in levels)
        sa, se = (f"step {lv}" for lv in levels)
        print(f"{name + ' b' + str(batch):<22}{m[a] * 1e3:>8.2f}ms{m[e] * 1e3:>8.2f}ms{m[a] / m[e]:>8.2f}×"
              f"{m[sa] * 1e3:>9.2f}ms{m[se] * 1e3:>9.2f}ms{m[sa] / m[se]:>8.2f}×", flush=True)


ENGINES = ("interp step", "ort step", "torch step", "ort fwd", "torch-onnx fwd")


def optimised_nodes(model) -> collections.Counter:
    """The nodes of ``model`` after onnxruntime's optimiser at graphc's level for its kind (CPU, one
    thread), names left out: op type, domain, attributes, and the shapes of the initializers it reads."""
    import tempfile

    import onnx
    import onnxruntime as ort

    from graphc.backends.ort import OPTIMIZATION, graph_kind

    proto = model if hasattr(model, "SerializeToString") else onnx.load_from_string(model)
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION[graph_kind(proto)])
        options.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        optimised = onnx.load(options.optimized_model_filepath)
    weights = {t.name: tuple(t.dims) for t in optimised.graph.initializer}
    return collections.Counter(
        (n.op_type, n.domain, tuple(sorted((a.name, str(onnx.helper.get_attribute_value(a))) for a in n.attribute)),
         tuple(weights.get(i) for i in n.input))
        for n in optimised.graph.node)


def forward_graphs(workloads: list[str], rounds: int) -> None:
    """Per workload: whether graphc's and torch.onnx.export's forward graphs are the same nodes once
    onnxruntime has optimised them, and their times (wall time; CPU time on one thread, the steadier figure)."""
    clock = time.process_time if THREADS == 1 else time.perf_counter
    print(f"forward graphs after onnxruntime's optimiser; median of {rounds} interleaved rounds × 3 calls, "
          f"{'CPU' if THREADS == 1 else 'wall'} time, {THREADS} thread(s); load average at start {os.getloadavg()[0]:.2f}")
    for name in workloads:
        engines = setup(name, WORKLOADS[name], only=["ort fwd", "torch-onnx fwd"])
        ours, theirs = (optimised_nodes(engines[k].model) for k in ("ort fwd", "torch-onnx fwd"))
        same = "the same nodes" if ours == theirs else "different nodes"
        # a second session of graphc's own graph: its ratio to the first is what the timing cannot resolve
        engines["ort fwd again"] = engines["ort fwd"].again()
        m = interleaved(engines, rounds, clock=clock)
        print(f"{name + ' b' + str(WORKLOADS[name]):<22}{sum(ours.values()):>4} and {sum(theirs.values()):>3} nodes: {same:<16}"
              f"ort fwd {m['ort fwd'] * 1e3:7.3f}ms  torch-onnx fwd {m['torch-onnx fwd'] * 1e3:7.3f}ms  "
              f"ratio {m['ort fwd'] / m['torch-onnx fwd']:.3f}×  (graphc's graph against itself {m['ort fwd again'] / m['ort fwd']:.3f}×)",
              flush=True)
        for label, only in (("only graphc's", ours - theirs), ("only torch's", theirs - ours)):
            for (op, domain, attrs, shapes), count in sorted(only.items()):
                print(f"    {label}: {count} × {op}{' (' + domain + ')' if domain else ''} {dict(attrs)} weights {shapes}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


def subset(workloads: list[str], engines: list[str], rounds: int, cpu_time: bool, static_batch: bool = False) -> None:
    """Some engines only, each workload on a line, with interp/torch when both are timed."""
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        raise SystemExit(f"bench_peers: unknown engine(s) {', '.join(unknown)}; known: {', '.join(ENGINES)}")
    clock = time.process_time if cpu_time else time.perf_counter
    print(f"median of {rounds} interleaved rounds × 3 calls, {'CPU' if cpu_time else 'wall'} time, {THREADS} thread(s); "
          f"load average at start {os.getloadavg()[0]:.2f}")
    for name in workloads:
        m = interleaved(setup(name, WORKLOADS[name], only=engines, static_batch=static_batch), rounds, clock=clock)
        ratio = f"   interp/torch {m['interp step'] / m['torch step']:.2f}×" if {"interp step", "torch step"} <= m.keys() else ""
        print(f"{name + ' b' + str(WORKLOADS[name]):<22}" + "".join(f"{k} {m[k] * 1e3:8.2f}ms  " for k in engines) + ratio, flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


def versions() -> str:
    import onnxruntime
    import torch

    try:
        from threadpoolctl import threadpool_info

        blas = "; ".join(f"{lib.get('internal_api')} {lib.get('version')} kernel={lib.get('architecture')} threads={lib.get('num_threads')}"
                         for lib in threadpool_info() if lib.get("user_api") == "blas")
    except ImportError:
        blas = "threadpoolctl not installed"
    config = torch.__config__.show()
    torch_blas = config.split("BLAS_INFO=")[1].split(",")[0] if "BLAS_INFO=" in config else "?"
    return (f"graphc {graphc.__version__}; numpy {np.__version__} (BLAS: {blas}); onnxruntime {onnxruntime.__version__} "
            f"(CPU provider, MLAS, intra-op threads={THREADS}); torch {torch.__version__} (threads={torch.get_num_threads()}, "
            f"BLAS {torch_blas}, CPU kernels {torch.backends.cpu.get_cpu_capability()}, oneDNN={torch.backends.mkldnn.is_available()}); "
            f"{os.cpu_count()} cores")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--ort-levels", action="store_true", help="time graphc's forward graph and training step at both onnxruntime levels")
    ap.add_argument("--forward-graphs", action="store_true",
                    help="compare graphc's and torch.onnx.export's forward graphs after onnxruntime's optimiser, and time them")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--no-rss", action="store_true", help="skip the ResNet-20 peak-memory subprocesses")
    ap.add_argument("--static-batch", action="store_true",
                    help="every exported graph with the workload's batch fixed (graphc export --static-batch; torch.onnx.export without dynamic axes)")
    ap.add_argument("--threads", type=int, default=THREADS, help="threads of every engine (default 2)")
    ap.add_argument("--cpu-time", action="store_true", help="time calls by the process's CPU time (needs --threads 1)")
    ap.add_argument("--engines", help="a comma-separated subset of: " + ", ".join(ENGINES))
    ap.add_argument("--rss", choices=("interp", "ort", "torch"), help=argparse.SUPPRESS)
    ap.add_argument("--rss-workload", default="resnet20_cifar", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss:
        rss_child(args.rss, args.rss_workload, WORKLOADS[args.rss_workload], args.static_batch)
        return
    if args.cpu_time and THREADS != 1:
        ap.error("--cpu-time needs --threads 1 (the CPU time of several threads counts their spinning too)")
    import torch

    torch.set_num_threads(THREADS)
    print(versions())
    if args.engines:
        return subset(args.workloads.split(","), [e.strip() for e in args.engines.split(",")], args.rounds, args.cpu_time, args.static_batch)
    if args.ort_levels:
        return ort_levels(args.workloads.split(","), args.rounds)
    if args.forward_graphs:
        return forward_graphs(args.workloads.split(","), args.rounds)
    print(f"median of {args.rounds} interleaved rounds × 3 calls; ratios < 1: graphc faster; load average at start {os.getloadavg()[0]:.2f}"
          + ("; static batch" if args.static_batch else "; symbolic batch"))
    header = (f"{'workload':<22}{'interp step':>12}{'ort step':>10}{'torch step':>11}{'ort fwd':>10}{'torch-onnx fwd':>15}"
              f"{'interp/torch':>13}{'ort/torch':>10}{'fwd/torch-onnx':>15}")
    print(header)
    print("─" * len(header))
    for name in args.workloads.split(","):
        engines = setup(name, WORKLOADS[name], static_batch=args.static_batch)
        m = interleaved(engines, args.rounds)
        print(f"{name + ' b' + str(WORKLOADS[name]):<22}" + "".join(f"{m[k] * 1e3:>{w - 2}.2f}ms" for k, w in
              (("interp step", 12), ("ort step", 10), ("torch step", 11), ("ort fwd", 10), ("torch-onnx fwd", 15)))
              + f"{m['interp step'] / m['torch step']:>12.2f}×{m['ort step'] / m['torch step']:>9.2f}×"
              f"{m['ort fwd'] / m['torch-onnx fwd']:>14.2f}×", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f} (other processes on the machine: figures drift with it)")
    print("targets: interp/torch ≤ 1.0 (MLPs, LeNet-5), ≤ 1.5 (ResNet-20); ort/torch ≤ 0.8; fwd/torch-onnx ≤ 1.0")
    if args.no_rss:
        return
    print("\nResNet-20 b32 training step, peak RSS (each engine alone in a subprocess, 10 steps):")
    for engine in ("interp", "ort", "torch"):
        out = subprocess.run([sys.executable, __file__, "--rss", engine, f"--threads={THREADS}", *(["--static-batch"] if args.static_batch else [])],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"  {engine:<7} peak {r['peak_mb']:7.0f} MB; before the first step {r['before_mb']:6.0f} MB; "
              f"growth {r['peak_mb'] - r['before_mb']:6.0f} MB")


if __name__ == "__main__":
    main()
