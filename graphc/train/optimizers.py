"""Optimisers as graph nodes: a training graph plus one update step, so that one run of the graph
(on the interpreter or on onnxruntime) is one whole training step.

The course's rules, per trainable parameter ``w`` with gradient ``g`` and the 0-d input ``lr``:

- ``sgd``:      ``w' = w − lr·g``
- ``momentum``: ``v' = μ·v − lr·g``, ``w' = w + v'``
- ``nesterov``: ``v' = μ·v − lr·g``, ``w' = w − μ·v + (1 + μ)·v'``
- ``rmsprop``:  ``c' = ρ·c + (1 − ρ)·g²``, ``w' = w − lr·g/(√c' + ε)``
- ``adam``:     ``t' = t + 1``, ``m' = β₁·m + (1 − β₁)·g``, ``v' = β₂·v + (1 − β₂)·g²``,
                ``w' = w − lr·(m'/(1 − β₁ᵗ'))/(√(v'/(1 − β₂ᵗ')) + ε)``

State inputs are named ``state/<param>/<slot>`` (``velocity``, ``cache``, ``m``, ``v``) and
``state/step``; results ``new/<param>`` and ``new/state/…``; running statistics of batchnorm come
out as ``new/<param>`` too. ``graph.graph["step"]`` maps every state input and parameter to its
new value's node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ..errors import GraphcError
from ..ops import optim
from ..ops.elementwise import Add, AffineScalar
from ..ops.source import Input
from ..tensor import TensorType

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam")
SLOTS = {"sgd": (), "momentum": ("velocity",), "nesterov": ("velocity",), "rmsprop": ("cache",), "adam": ("m", "v")}


@dataclass(frozen=True)
class Hyper:
    momentum: float = 0.9
    rho: float = 0.99  # RMSProp's ρ (the spec's train.rho)
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


@dataclass
class _Adder:
    graph: nx.DiGraph
    added: list = field(default_factory=list)

    def input(self, name: str, shape, dtype: str = "float32") -> str:
        self.graph.add_node(name, op=Input(shape=tuple(shape), dtype=dtype), inputs=(), type=TensorType(tuple(shape), dtype),
                            role="input", layer=name, scope=(), loc=None)
        return name

    def op(self, name: str, op, inputs) -> str:
        y = op.infer([self.graph.nodes[i]["type"] for i in inputs])
        self.graph.add_node(name, op=op, inputs=tuple(inputs), type=y, role="update", layer=name, scope=(), loc=None)
        for i in inputs:
            self.graph.add_edge(i, name)
        return name


def with_optimizer(training: nx.DiGraph, kind: str, hyper: Hyper = Hyper(), grads: bool = True) -> nx.DiGraph:
    """A copy of ``training`` with the update nodes of optimiser ``kind`` added.

    ``grads=False``: the step need not return the gradients (``graph.graph["grads"]`` is emptied), so
    an SGD or momentum update whose gradient is one 2-D matrix product read by nothing else (a dense
    weight's) takes the product's operands instead, as one :class:`~graphc.ops.optim.MatMulUpdate`.
    """
    if kind not in OPTIMIZERS:
        raise GraphcError(f"unknown optimizer '{kind}'", hint=f"expected one of: {', '.join(OPTIMIZERS)}")
    g = training.copy()
    for n in g.nodes:
        g.nodes[n].update(dict(training.nodes[n]))
    add = _Adder(g)
    lr = add.input("lr", ())
    step: dict[str, str] = {}
    t_new = None
    if kind == "adam":
        t = add.input("state/step", ())
        t_new = step[t] = add.op("new/state/step", AffineScalar(scale=1.0, shift=1.0), [t])
    for p, grad in training.graph["grads"].items():
        shape = g.nodes[p]["type"].shape
        state = {slot: add.input(f"state/{p}/{slot}", shape) for slot in SLOTS[kind]}
        new = {slot: f"new/state/{p}/{slot}" for slot in state}
        product = None if grads else _lone_product(training, grad)
        if kind == "sgd":
            w_new = (add.op(f"new/{p}", optim.SGDUpdate(), [p, grad, lr]) if product is None else
                     add.op(f"new/{p}", optim.MatMulUpdate(scale=1.0, **product[0]), [p, *product[1], lr]))
        elif kind in ("momentum", "nesterov"):
            v_new = (add.op(new["velocity"], optim.MomentumVelocity(momentum=hyper.momentum), [state["velocity"], grad, lr])
                     if product is None else
                     add.op(new["velocity"], optim.MatMulUpdate(scale=hyper.momentum, **product[0]), [state["velocity"], *product[1], lr]))
            w_new = (add.op(f"new/{p}", Add(), [p, v_new]) if kind == "momentum" else
                     add.op(f"new/{p}", optim.NesterovUpdate(momentum=hyper.momentum), [p, state["velocity"], v_new]))
        elif kind == "rmsprop":
            c_new = add.op(new["cache"], optim.MovingAverage(beta=hyper.rho, square=True), [state["cache"], grad])
            w_new = add.op(f"new/{p}", optim.RMSPropUpdate(eps=hyper.eps), [p, grad, c_new, lr])
        else:
            m_new = add.op(new["m"], optim.MovingAverage(beta=hyper.beta1), [state["m"], grad])
            v_new = add.op(new["v"], optim.MovingAverage(beta=hyper.beta2, square=True), [state["v"], grad])
            w_new = add.op(f"new/{p}", optim.AdamUpdate(beta1=hyper.beta1, beta2=hyper.beta2, eps=hyper.eps), [p, m_new, v_new, t_new, lr])
        step[p] = w_new
        for slot in state:
            step[state[slot]] = new[slot]
    for stat, node in training.graph.get("updates", {}).items():
        step[stat] = node
    g.graph["step"] = step
    g.graph["optimizer"] = kind
    if not grads:
        g.graph["grads"] = {}
        g.remove_nodes_from([n for n in training.graph["grads"].values() if g.out_degree(n) == 0])
    return g


def _lone_product(training: nx.DiGraph, grad: str):
    """``({transpose_a, transpose_b}, [a, b])``, the product's transposes and operands, when gradient
    ``grad`` is a 2-D ``MatMul`` that no node, output or other parameter reads; else None."""
    node = training.nodes[grad]
    op = node["op"]
    if (op.kind != "matmul" or any(training.nodes[i]["type"].rank != 2 for i in node["inputs"])
            or training.out_degree(grad) or list(training.graph["grads"].values()).count(grad) != 1
            or grad in training.graph.get("outputs", {}).values() or grad in training.graph.get("updates", {}).values()):
        return None
    return {"transpose_a": op.transpose_a, "transpose_b": op.transpose_b}, list(node["inputs"])


def initial_state(graph: nx.DiGraph) -> dict:
    """Zero optimiser state (and step 0) for every ``state/…`` input of a graph from :func:`with_optimizer`."""
    import numpy as np

    state = {}
    for n, a in graph.nodes(data=True):
        if n.startswith("state/"):
            state[n] = np.zeros(tuple(a["type"].shape), np.float32)
    return state
