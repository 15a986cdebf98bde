"""Gradient checking: symbolic gradients against float64 central differences.

``rel_error(a, n) = |a − n| / max(1e-8, |a| + |n|)`` (the course's measure), on every entry of small
tensors and on a random sample of entries (``max_entries``) of large ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .autodiff import differentiate
from .interpreter import Program


@dataclass
class GradCheck:
    name: str
    max_rel_error: float
    max_abs_error: float
    checked: int


def central_differences(loss_fn, values: dict, name: str, index, h: float) -> float:
    x = values[name]
    old = x[index]
    x[index] = old + h
    plus = loss_fn(values)
    x[index] = old - h
    minus = loss_fn(values)
    x[index] = old
    return (plus - minus) / (2 * h)


def check_gradients(graph, loss: str, values: dict[str, np.ndarray], wrt: list[str], h: float = 1e-6,
                    max_entries: int = 24, seed: int = 0) -> list[GradCheck]:
    """Compare the training graph's gradients of ``loss`` with central differences, in float64."""
    values = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in values.items()}
    training, grads = differentiate(graph, loss, wrt)
    wrt = [w for w in wrt if w in grads]
    program = Program(training, [loss] + [grads[w] for w in wrt])
    forward = Program(graph, [loss])
    symbolic = program.run(values)
    loss_fn = lambda vals: float(forward.run(vals)[loss])  # noqa: E731
    rng = np.random.default_rng(seed)
    results = []
    for w in wrt:
        analytic = np.asarray(symbolic[grads[w]], dtype=np.float64)
        x = values[w]
        if x.size <= max_entries:
            indices = list(np.ndindex(x.shape))
        else:
            flat = rng.choice(x.size, size=max_entries, replace=False)
            indices = [np.unravel_index(i, x.shape) for i in flat]
        rel, ab = 0.0, 0.0
        for index in indices:
            numeric = central_differences(loss_fn, values, w, index, h)
            a = float(analytic[index])
            err = abs(a - numeric)
            ab = max(ab, err)
            rel = max(rel, err / max(1e-8, abs(a) + abs(numeric)))
        results.append(GradCheck(w, rel, ab, len(indices)))
    return results


def spec_values(graph, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Random float64 inputs with the symbolic dims set to ``batch``; labels valid for their loss."""
    from .params import initial_params

    rng = np.random.default_rng(seed)
    values = {k: v.astype(np.float64) for k, v in initial_params(graph, seed).items()}
    for name, a in graph.nodes(data=True):
        if a["role"] != "input" or a["op"].kind != "input":
            continue
        shape = tuple(d if isinstance(d, int) else batch for d in a["type"].shape)
        if a["type"].dtype == "int64":
            classes = 2
            for user in graph.successors(name):
                scores = graph.nodes[graph.nodes[user]["inputs"][0]]["type"]
                if graph.nodes[user]["op"].kind in ("softmax_cross_entropy", "hinge") and isinstance(scores.shape[-1], int):
                    classes = scores.shape[-1]
            values[name] = rng.integers(0, classes, size=shape).astype(np.int64)
        else:
            values[name] = rng.standard_normal(shape)
    return values


def check_spec(graph, batch: int = 2, seed: int = 0, directions: int = 2, h: float = 1e-6) -> list[GradCheck]:
    """Every trainable parameter of a spec's training graph, checked along random directions.

    For a unit direction ``v`` in one parameter's space the symbolic side is ``⟨∇L, v⟩`` and the
    numeric side ``(L(θ + h·v) − L(θ − h·v))/2h``; only the nodes downstream of that parameter are
    re-run for each evaluation, so large specs stay quick.
    """
    import networkx as nx

    from .autodiff import training_graph
    from .run import draw_masks

    training = training_graph(graph)
    loss, grads = training.graph["loss"], training.graph["grads"]
    values = spec_values(training, batch, seed)
    sizes = {d: batch for a in training.nodes.values() for d in a["type"].shape if isinstance(d, str)}
    values.update({k: v.astype(np.float64) for k, v in draw_masks(training, sizes, seed, np.float64).items()})
    forward_nodes = nx.ancestors(training, loss) | {loss}
    base = Program(training, sorted(forward_nodes, key=list(training.nodes).index) + [grads[p] for p in grads]).run(values)
    rng = np.random.default_rng(seed + 1)
    results = []
    for p, gnode in grads.items():
        downstream = (nx.descendants(training, p) | {p}) & forward_nodes
        given = {i for n in downstream for i in training.nodes[n]["inputs"] if i not in downstream}
        partial = Program(training, [loss], given=given | {p})
        feeds = {n: base[n] for n in given}
        analytic_grad = np.asarray(base[gnode], np.float64)
        rel, ab = 0.0, 0.0
        for _ in range(directions):
            v = rng.standard_normal(values[p].shape)
            v /= np.linalg.norm(v)
            plus = float(partial.run({**feeds, p: values[p] + h * v})[loss])
            minus = float(partial.run({**feeds, p: values[p] - h * v})[loss])
            numeric = (plus - minus) / (2 * h)
            analytic = float(np.sum(analytic_grad * v))
            err = abs(analytic - numeric)
            ab = max(ab, err)
            rel = max(rel, err / max(1e-8, abs(analytic) + abs(numeric)))
        results.append(GradCheck(p, rel, ab, directions))
    return results
