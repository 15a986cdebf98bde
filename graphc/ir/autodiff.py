"""Symbolic reverse-mode differentiation: forward graph + loss ➜ one training graph (DESIGN.md §2–3).

Each op's VJP rule emits ordinary graph nodes through a :class:`GradBuilder`; the result is one graph
— forward, loss and backward — that shape inference, the passes, the interpreter and the exporter
treat like any other. Cotangents flow only where needed: into trainable parameters and the inputs
asked for, along paths from them to the loss; never into integer inputs (labels). Several
cotangents of one node (fan-out) are summed.

Training mode is part of the graph, not a flag of the runner: :func:`training_graph` first rewrites
dropout into a product with a :class:`~graphc.ops.source.RandomMask` input (drawn by the runner
from its seed, so every backend applies the same mask) and batchnorm into its batch-statistics form,
whose running-statistic updates become extra outputs.
"""

from __future__ import annotations

import networkx as nx

from ..errors import Diagnostic, GraphcError, NotDifferentiable, ShapeError
from ..ops.base import Op
from ..ops.elementwise import Add
from ..ops.reduce import SumTo
from ..ops.source import Const
from ..tensor import TensorType
from .analysis import graph_size_names
from .graph import topo_order


class GradBuilder:
    """What a VJP rule sees: types, which inputs need a cotangent, and a way to add nodes."""

    def __init__(self, graph: nx.DiGraph):
        self.graph = graph
        self.node = ""
        self._needs: tuple[bool, ...] = ()

    def needs(self, i: int) -> bool:
        return self._needs[i]

    def type_of(self, name: str) -> TensorType:
        return self.graph.nodes[name]["type"]

    def op(self, op: Op, inputs, hint: str) -> str:
        """Add ``op(inputs)`` as ``<node>/grad/<hint>`` (numbered if taken); its type is inferred now,
        so a wrong gradient rule fails here, at the node it belongs to."""
        base = f"{self.node}/grad/{hint}"
        name, k = base, 1
        while name in self.graph:
            k += 1
            name = f"{base}{k}"
        inputs = tuple(inputs)
        y = op.infer([self.type_of(i) for i in inputs])
        fwd = self.graph.nodes.get(self.node, {})
        self.graph.add_node(name, op=op, inputs=inputs, type=y, role="grad", of=self.node, layer=fwd.get("layer", self.node),
                            scope=fwd.get("scope", ()), loc=fwd.get("loc"))
        for src in inputs:
            self.graph.add_edge(src, name)
        return name

    def const(self, value: float, dtype: str = "float32") -> str:
        return self.op(Const(value=value, shape=(), dtype=dtype), [], "const")

    def sum_to(self, name: str, like: str, hint: str) -> str:
        """``name`` summed down to the shape of ``like`` when broadcasting made it larger."""
        if self.type_of(name).shape == self.type_of(like).shape:
            return name
        return self.op(SumTo(shape=self.type_of(like).shape), [name], hint)


def differentiate(graph: nx.DiGraph, loss: str, wrt: list[str]) -> tuple[nx.DiGraph, dict[str, str]]:
    """A copy of ``graph`` with backward nodes added; returns it and ``{wrt node: gradient node}``."""
    g = graph.copy()
    for n in g.nodes:
        g.nodes[n].update(dict(graph.nodes[n]))
    float_wrt = [w for w in wrt if g.nodes[w]["type"].dtype.startswith("float")]
    upstream = nx.ancestors(g, loss) | {loss}
    downstream = set(float_wrt)
    for w in float_wrt:
        downstream |= nx.descendants(g, w)
    relevant = upstream & downstream
    b = GradBuilder(g)
    seed_node = f"{loss}/grad/seed"
    g.add_node(seed_node, op=Const(value=1.0, shape=(), dtype=g.nodes[loss]["type"].dtype), inputs=(), type=g.nodes[loss]["type"],
               role="grad", of=loss, layer=g.nodes[loss].get("layer", loss), scope=(), loc=g.nodes[loss].get("loc"))
    cotangents: dict[str, list[str]] = {loss: [seed_node]}
    grads: dict[str, str] = {}
    errors = []
    for node in reversed(topo_order(graph)):
        if node not in relevant or node not in cotangents:
            continue
        parts = cotangents.pop(node)
        b.node = node
        gy = parts[0]
        for other in parts[1:]:
            gy = b.op(Add(), [gy, other], "sum")
        attrs = g.nodes[node]
        if node in float_wrt:
            grads[node] = gy
        if attrs["role"] in ("input", "param"):
            continue
        xs = attrs["inputs"]
        b._needs = tuple(x in relevant for x in xs)
        if not any(b._needs):
            continue
        try:
            results = attrs["op"].vjp(b, xs, node, gy)
        except NotDifferentiable as e:
            errors.append(Diagnostic(f"cannot differentiate through {attrs['op'].kind} '{node}': {e}", attrs.get("loc"),
                                     "stop the gradient before it, or make the path to the loss differentiable"))
            continue
        except ShapeError as e:  # a wrong VJP rule: the emitted node's shape rule caught it
            raise AssertionError(f"gradient rule of {attrs['op'].kind} '{node}' is inconsistent: {e}") from e
        for x, gx, wanted in zip(xs, results, b._needs):
            if wanted and gx is not None:
                if g.nodes[gx]["type"].shape != g.nodes[x]["type"].shape:
                    raise AssertionError(f"gradient rule of {attrs['op'].kind} '{node}' gives {g.nodes[gx]['type']} for input {x} "
                                         f"{g.nodes[x]['type']}")
                cotangents.setdefault(x, []).append(gx)
    if errors:
        raise GraphcError(errors)
    for w in float_wrt:
        if w not in grads:  # the loss does not depend on it: its gradient is zero
            b.node = w
            grads[w] = b.op(Const(value=0.0, shape=tuple(g.nodes[w]["type"].shape), dtype=g.nodes[w]["type"].dtype), [], "zero")
    return g, grads


def to_training_mode(graph: nx.DiGraph) -> nx.DiGraph:
    """Rewrite inference-form ops into their training forms (pure: returns a new graph).

    ``dropout(x)`` becomes ``mul(x, <layer>.mask)`` with a :class:`RandomMask` input; ``batchnorm``
    becomes ``batchnorm_train(x, stats, γ, β)`` with ``stats = batchnorm_stats(x)`` (node
    ``<node>/stats``: batch mean, variance and 1/√(var + ε), computed once) and its running statistics
    get update nodes ``<param>/update`` = ``batchnorm_running_update(x, stats, running)``, listed in
    ``graph.graph["updates"]``.
    """
    from ..ops import BY_KIND
    from ..ops.elementwise import Mul
    from ..ops.source import RandomMask

    g = graph.copy()
    for n in g.nodes:
        g.nodes[n].update(dict(graph.nodes[n]))
    updates = dict(graph.graph.get("updates", {}))
    masks = dict(graph.graph.get("masks", {}))
    for name in topo_order(graph):
        attrs = g.nodes[name]
        op = attrs["op"]
        common = {k: attrs.get(k) for k in ("layer", "scope", "loc")}
        if op.kind == "dropout":
            mask = f"{attrs['layer']}.mask"
            shape = attrs["type"].shape
            g.add_node(mask, op=RandomMask(shape=shape, p=op.p), inputs=(), type=TensorType(tuple(shape), attrs["type"].dtype),
                       role="input", **common)
            _rewire(g, name, Mul(), (attrs["inputs"][0], mask))
            masks[mask] = name
        elif op.kind == "batchnorm":
            x, gamma, beta, mean, var = attrs["inputs"]
            # the batch statistics once, shared by the normalisation, both running updates and the backward
            stats_op = BY_KIND["batchnorm_stats"](eps=op.eps)
            stats = f"{name}/stats"
            g.add_node(stats, op=stats_op, inputs=(x,), type=stats_op.infer([g.nodes[x]["type"]]), role="op", **common)
            g.add_edge(x, stats)
            _rewire(g, name, BY_KIND["batchnorm_train"](), (x, stats, gamma, beta))
            update = BY_KIND["batchnorm_running_update"]
            for stat, which in ((mean, "mean"), (var, "var")):
                node = f"{stat}/update"
                u = update(momentum=op.momentum, which=which)
                g.add_node(node, op=u, inputs=(x, stats, stat), type=g.nodes[stat]["type"], role="op", **common)
                for src in (x, stats, stat):
                    g.add_edge(src, node)
                updates[stat] = node
    g.graph["updates"] = updates
    g.graph["masks"] = masks
    return g


def _rewire(g: nx.DiGraph, name: str, op: Op, inputs: tuple[str, ...]) -> None:
    for src in list(g.predecessors(name)):
        g.remove_edge(src, name)
    g.nodes[name]["op"] = op
    g.nodes[name]["inputs"] = inputs
    for src in inputs:
        g.add_edge(src, name)


def training_graph(graph: nx.DiGraph, wrt_inputs: tuple[str, ...] = ()) -> nx.DiGraph:
    """Forward + loss + backward in one graph: ``graph.graph["grads"]`` maps every trainable parameter
    (and each of ``wrt_inputs``) to its gradient node; ``["updates"]`` lists running-statistic updates.
    Symbolic sizes must be bound first (:func:`graphc.ir.analysis.specialize`)."""
    loss = graph.graph.get("loss")
    if loss is None:
        raise GraphcError("the spec has no loss, so there is nothing to differentiate",
                          hint="add a 'loss:' section, e.g. {op: softmax_cross_entropy, inputs: [logits, label]}")
    sizes = sorted(graph_size_names(graph))
    if sizes:  # gradient ops hold input sizes as attributes
        raise GraphcError(f"differentiating needs static sizes, and the spec's inputs have the symbolic size(s) {', '.join(sizes)}",
                          hint=f"bind them with --size {','.join(f'{n}=…' for n in sizes)} (compile, check-grad); "
                               "run, grad and train bind them from their inputs")
    g = to_training_mode(graph)
    params = [n for n, a in g.nodes(data=True) if a["role"] == "param" and a["op"].trainable]
    trained, grads = differentiate(g, loss, params + list(wrt_inputs))
    trained.graph["grads"] = grads
    return trained
