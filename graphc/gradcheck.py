"""Gradient checking: symbolic gradients against float64 central differences.

``rel_error(a, n) = |a − n| / max(1e-8, |a| + |n|)`` (the course's measure), on every entry of small
tensors and on a random sample of entries (``max_entries``) of large ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends.interpreter import Program
from .ir.autodiff import differentiate
from .ir.graph import topo_order
from .ops.pointwise import PIECEWISE


@dataclass
class GradCheck:
    """One checked tensor. ``reaches_loss`` False: the loss does not depend on it (a layer feeding
    only another output), so its gradient is zero by definition; ``max_abs_error`` is then the
    largest entry of the symbolic gradient, which must be 0."""
    name: str
    max_rel_error: float
    max_abs_error: float
    checked: int
    reaches_loss: bool = True


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


def spec_values(graph, batch: int, seed: int, params: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Random float64 inputs with the symbolic dims set to ``batch``; labels valid for their loss;
    the parameters from ``params`` where given, else from their initialisers with ``seed``."""
    from .ir.analysis import index_bound
    from .ir.params import initial_params

    rng = np.random.default_rng(seed)
    values = {k: v.astype(np.float64) for k, v in initial_params(graph, seed, params).items()}
    for name, a in graph.nodes(data=True):
        if a["role"] != "input" or a["op"].kind != "input":
            continue
        shape = tuple(d if isinstance(d, int) else batch for d in a["type"].shape)
        if a["type"].dtype == "int64":
            values[name] = rng.integers(0, index_bound(graph, name) or 2, size=shape).astype(np.int64)
        else:
            values[name] = rng.standard_normal(shape)
    return values


#: max pools, frozen at their reference's maxima: pool kind → (the "at" op, the gradient's kind)
MAX_POOLS = {"maxpool2d": ("MaxPool2dAt", "maxpool2d_grad"), "maxpool1d": ("MaxPool1dAt", "maxpool1d_grad")}
KINKS = ("relu", "leaky_relu", *MAX_POOLS) + tuple(cls.kind for cls in PIECEWISE)


def _piece_key(op, x: str) -> tuple:
    """What a pointwise op and its ``<kind>_grad`` share: the kind, the attributes and the input."""
    return op.kind.removesuffix("_grad"), repr(sorted(op.attrs().items())), x


def freeze_kinks(graph, nodes: list[str], base: dict[str, np.ndarray]):
    """The graph with each op that has kinks fixed to its current piece, and the fed values.

    ``relu(x)`` becomes ``x · m`` with ``m = [x₀ > 0]`` (leaky: ``α`` below 0) and ``maxpool2d(x)``
    becomes ``maxpool2d_at(x₀, x)``, where ``x₀`` is the input at the checked point; their gradient
    nodes (``relu_grad``, ``leaky_relu_grad``, ``maxpool2d_grad``; ``maxpool1d`` alike) read the same
    ``m`` and ``x₀``. A piecewise activation (relu6, clip, hardsigmoid, hardswish) becomes the
    polynomial of the piece each entry of ``x₀`` lies on (``Op.piece``: ``f(x) = (a·x + b)·x + c``, with ``a``, ``b``, ``c`` fed
    arrays) and its ``<kind>_grad(x, gy)`` becomes ``gy · (2a·x + b)``: the kink masks are evaluated
    once, at the centre point, and held fixed for the ``±h`` steps. The frozen graph equals the
    original on the piece around that point and has the same gradient there, but it is smooth, so
    central differences do not jump when a step crosses a kink, and two engines cannot put a unit
    within rounding of zero (or of 6, or of ±3) on different sides of it.
    """
    from .ops.conv1d import MaxPool1dAt
    from .ops.elementwise import Add, Mul
    from .ops.pool import MaxPool2dAt
    from .ops.source import Input

    pooled_at = {"MaxPool2dAt": MaxPool2dAt, "MaxPool1dAt": MaxPool1dAt}

    g = graph.copy()
    for n in g.nodes:
        g.nodes[n].update(dict(graph.nodes[n]))

    def rewire(n, op, inputs):
        for src in list(g.predecessors(n)):
            g.remove_edge(src, n)
        g.nodes[n]["op"], g.nodes[n]["inputs"] = op, tuple(inputs)
        for src in inputs:
            g.add_edge(src, n)

    fed, masks, references, pieces = {}, {}, {}, {}

    def feed(ref, like, value, layer):
        """``value`` (shaped as node ``like``) fed to the graph as the input ``ref``."""
        g.add_node(ref, op=Input(shape=tuple(g.nodes[like]["type"].shape), dtype=g.nodes[like]["type"].dtype), inputs=(),
                   type=g.nodes[like]["type"], role="input", layer=layer, scope=(), loc=None)
        fed[ref] = value
        return ref

    def compute(name, op, inputs, like):
        """A new elementwise node ``op(inputs)`` shaped as node ``like`` (a part of a frozen piece)."""
        a = g.nodes[like]
        g.add_node(name, op=op, inputs=tuple(inputs), type=a["type"], role=a["role"], layer=a.get("layer", like), scope=(), loc=None)
        for src in inputs:
            g.add_edge(src, name)
        return name

    for n in nodes:
        a = g.nodes[n]
        x = a["inputs"][0]
        x0 = base[x]
        layer = a.get("layer", n)
        if a["op"].kind in MAX_POOLS:
            references[x] = feed(f"{n}/frozen_input", x, x0, layer)
            rewire(n, pooled_at[MAX_POOLS[a["op"].kind][0]](**a["op"].model_dump()), (references[x], x))
        elif a["op"].kind in ("relu", "leaky_relu"):
            alpha = getattr(a["op"], "alpha", 0.0)
            ref = feed(f"{n}/frozen_mask", x, np.where(x0 > 0, 1.0, alpha).astype(x0.dtype), layer)
            masks[n] = masks[x] = ref  # relu_grad reads the ReLU's output, leaky_relu_grad its input
            rewire(n, Mul(), (x, ref))
        else:  # piecewise: y = (a·x + b)·x + c on x₀'s piece
            quad, lin, const = a["op"].piece(x0)
            b_ref = feed(f"{n}/frozen_b", x, lin, layer)
            a_ref = feed(f"{n}/frozen_a", x, quad, layer) if quad is not None else None
            slope = compute(f"{n}/frozen_slope", Add(), (compute(f"{n}/frozen_ax", Mul(), (x, a_ref), n), b_ref), n) if a_ref else b_ref
            if const is None:
                rewire(n, Mul(), (x, slope))
            else:
                rewire(n, Add(), (compute(f"{n}/frozen_linear", Mul(), (x, slope), n), feed(f"{n}/frozen_c", x, const, layer)))
            pieces[_piece_key(a["op"], x)] = (b_ref, None if quad is None else feed(f"{n}/frozen_2a", x, 2 * quad, layer))
    for n, a in list(g.nodes(data=True)):
        kind, ins = a["op"].kind, a["inputs"]
        if kind in ("relu_grad", "leaky_relu_grad") and ins[0] in masks:
            rewire(n, Mul(), (ins[1], masks[ins[0]]))
        elif kind in {grad for _, grad in MAX_POOLS.values()} and ins[0] in references:
            rewire(n, a["op"], (references[ins[0]], ins[1]))
        elif kind.endswith("_grad") and ins and (found := pieces.get(_piece_key(a["op"], ins[0]))):
            b_ref, two_a = found  # f'(x) = 2a·x + b on the frozen piece; ins = (x, gy)
            slope = compute(f"{n}/frozen_slope", Add(), (compute(f"{n}/frozen_2ax", Mul(), (ins[0], two_a), n), b_ref), n) if two_a else b_ref
            rewire(n, Mul(), (ins[1], slope))
    return g, fed


WRT = ("params", "inputs", "all")


def float_inputs(graph) -> list[str]:
    """The spec's float data inputs (labels and other integer inputs have no gradient)."""
    return [n for n, a in graph.nodes(data=True) if a["role"] == "input" and a["op"].kind == "input" and a["type"].dtype != "int64"]


def check_spec(graph, batch: int = 1, seed: int = 0, directions: int = 2, h: float = 1e-4, support: int = 16,
               wrt: str = "params", params: dict[str, np.ndarray] | None = None) -> list[GradCheck]:
    """Every trainable parameter (``wrt="params"``), float input (``"inputs"``) or both (``"all"``) of
    a spec's training graph, checked along random directions, at the point ``params`` gives (every
    parameter's value; missing ones from the initialisers with ``seed``).

    For a unit direction ``v`` in one parameter's space the symbolic side is ``⟨∇L, v⟩`` and the
    numeric side ``(L(θ + h·v) − L(θ − h·v))/2h`` in float64; where the two differ by more than 1e-7,
    five-point stencils at ``h``, ``10h`` and ``100h`` (no h² term; larger steps lift tiny derivatives
    above the loss's rounding noise) give further estimates and the closest one is kept. The directions span the ``support``
    entries with the largest analytic gradient (a random direction over millions of weights has a
    derivative near the noise of the loss), ReLUs, max pools and the piecewise activations (relu6,
    clip, hardsigmoid, hardswish) are frozen to the piece the checked point lies on
    (:func:`freeze_kinks`, so a step cannot cross a kink), and only the nodes downstream of the
    parameter are re-run, so large specs stay quick. Where both sides are below what central
    differences resolve (``|g| < 1e-14·max(1, |L|)/h``, e.g. a bias that a softmax or a following
    batchnorm makes irrelevant) they agree by definition. A tensor the loss does not depend on (a
    layer feeding only another output) is reported with ``reaches_loss=False``; its symbolic gradient
    must be exactly zero.
    """
    import networkx as nx

    from .backends.run import draw_masks
    from .ir.autodiff import training_graph

    if wrt not in WRT:
        raise ValueError(f"wrt must be one of {WRT}, not {wrt!r}")
    inputs = tuple(float_inputs(graph)) if wrt in ("inputs", "all") else ()
    training = training_graph(graph, wrt_inputs=inputs)
    loss, grads = training.graph["loss"], dict(training.graph["grads"])
    if wrt == "inputs":
        grads = {p: g for p, g in grads.items() if p in inputs}
    elif wrt == "all":  # inputs first: students check input gradients first
        grads = {**{p: grads[p] for p in inputs if p in grads}, **{p: g for p, g in grads.items() if p not in inputs}}
    kinks = [n for n in nx.ancestors(training, loss) if training.nodes[n]["op"].kind in KINKS]
    values = spec_values(training, batch, seed, params)
    sizes = {d: batch for a in training.nodes.values() for d in a["type"].shape if isinstance(d, str)}
    values.update({k: v.astype(np.float64) for k, v in draw_masks(training, sizes, seed, np.float64).items()})
    forward_nodes = nx.ancestors(training, loss) | {loss}
    base = Program(training, sorted(forward_nodes, key=list(training.nodes).index) + [grads[p] for p in grads]).run(values)
    unfrozen = set(training)
    training, frozen = freeze_kinks(training, kinks, base)
    base.update(frozen)
    for n in topo_order(training):  # the nodes a frozen piece adds, elementwise of values at hand
        if n not in unfrozen and n not in frozen:
            base[n] = training.nodes[n]["op"].forward(*[base[i] for i in training.nodes[n]["inputs"]])
    forward_nodes = nx.ancestors(training, loss) | {loss}
    rng = np.random.default_rng(seed + 1)
    resolution = 1e-14 * max(1.0, abs(float(base[loss]))) / h
    results = []
    for p, gnode in grads.items():
        if p not in forward_nodes:  # the loss does not read p: its gradient is zero, nothing to perturb
            largest = float(np.abs(np.asarray(base[gnode])).max(initial=0.0))
            results.append(GradCheck(p, 0.0 if largest == 0 else 1.0, largest, 0, reaches_loss=False))
            continue
        downstream = (nx.descendants(training, p) | {p}) & forward_nodes
        given = {i for n in downstream for i in training.nodes[n]["inputs"] if i not in downstream}
        partial = Program(training, [loss], given=given | {p})
        feeds = {n: base[n] for n in given}
        analytic_grad = np.asarray(base[gnode], np.float64)
        rel, ab = 0.0, 0.0
        # directions over the entries with the largest analytic gradient: where central differences
        # resolve it best (a random direction over millions of weights has a derivative near the noise)
        magnitude = np.abs(analytic_grad).ravel()
        top = np.argpartition(magnitude, -support)[-support:] if magnitude.size > support else np.arange(magnitude.size)
        point = values[p].copy()
        flat = point.reshape(-1)
        at = flat[top].copy()
        for _ in range(directions):
            v = rng.standard_normal(top.size)
            v /= np.linalg.norm(v)

            def f(t):
                flat[top] = at + t * v
                return float(partial.run({**feeds, p: point})[loss])

            analytic = float(np.dot(analytic_grad.reshape(-1)[top], v))
            numeric = (f(h) - f(-h)) / (2 * h)
            for step in (h, 10 * h, 100 * h):
                if abs(analytic - numeric) <= 1e-7 * (abs(analytic) + abs(numeric)):
                    break
                # not resolved yet: the five-point stencil (no h² term) at this step, then at larger
                # steps, which lift a tiny derivative above the loss's rounding noise
                five = (8 * (f(step) - f(-step)) - (f(2 * step) - f(-2 * step))) / (12 * step)
                if abs(analytic - five) < abs(analytic - numeric):
                    numeric = five
            flat[top] = at
            err = abs(analytic - numeric)
            ab = max(ab, err)
            if abs(analytic) + abs(numeric) >= resolution:
                rel = max(rel, err / (abs(analytic) + abs(numeric)))
        results.append(GradCheck(p, rel, ab, directions))
    return results
