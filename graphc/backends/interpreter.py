"""The NumPy interpreter (DESIGN.md §6): a schedule computed once, then a short loop.

The schedule lists, for each node needed by the requested outputs, its kernel, the slots of its
inputs and the slots to release after it (each buffer is freed after its last use). Two nodes whose
ops share work (``Op.fused_forward``: a conv's input and weight gradients, say) run as one step, and
a node may take an earlier node's value that spares it work (``Op.reuse_forward``: a max pool's
gradient takes the pool's output).
Feeds (inputs, parameters, random masks) fill their slots directly; constants are computed once.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import networkx as nx
import numpy as np

from ..ir.graph import topo_order

_ALLOCATOR_TUNED = False


def keep_freed_memory() -> None:
    """Ask glibc to keep freed large blocks instead of returning them to the OS.

    The interpreter frees and re-allocates the same large temporaries on every step; when glibc
    serves them with fresh ``mmap``\\ s, every step page-faults them back in (measured: up to 40 % of
    a LeNet training step). Raising the mmap and trim thresholds keeps them in the heap for reuse.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


FED_KINDS = ("input", "param", "random_mask")


class Program:
    """A compiled schedule of ``graph`` computing ``outputs`` from the fed nodes.

    ``given`` names further nodes whose values the caller supplies (their ancestors are not run):
    re-running only what depends on one changed parameter, for instance.
    """

    def __init__(self, graph: nx.DiGraph, outputs: list[str], given: set[str] = frozenset()):
        keep_freed_memory()
        needed, stack = set(), list(outputs)
        while stack:
            n = stack.pop()
            if n not in needed:
                needed.add(n)
                if n not in given:
                    stack.extend(graph.nodes[n]["inputs"])
        order = [n for n in topo_order(graph) if n in needed]
        self.graph = graph
        self.outputs = list(outputs)
        self.slot = {n: i for i, n in enumerate(order)}
        self.feeds = [n for n in order if n in given or graph.nodes[n]["op"].kind in FED_KINDS]
        fed = set(self.feeds)
        # constants (the loss seed, say) are computed here once, not on every run; read-only, as
        # every run shares them
        self.constants = {self.slot[n]: graph.nodes[n]["op"].forward() for n in order
                          if graph.nodes[n]["op"].kind == "const" and n not in fed}
        for value in self.constants.values():
            value.flags.writeable = False
        ready = fed | {n for n in order if self.slot[n] in self.constants}
        plan = _plan_steps(graph, [n for n in order if n not in ready], ready)
        last_use: dict[str, int] = {}
        for step, (_, inputs, _) in enumerate(plan):
            for i in inputs:
                last_use[i] = step
        keep = set(outputs)
        frees: dict[int, list[int]] = {}
        for n, step in last_use.items():
            if n not in keep:
                frees.setdefault(step, []).append(self.slot[n])
        # a step's output is one slot, or a tuple of slots for a fused step
        self.steps = [
            (kernel, tuple(self.slot[i] for i in inputs),
             self.slot[made[0]] if len(made) == 1 else tuple(self.slot[m] for m in made), tuple(frees.get(step, ())))
            for step, (kernel, inputs, made) in enumerate(plan)
        ]
        self.size = len(order)

    def run(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Evaluate the outputs; ``values`` maps every fed node (inputs, params, masks) to an array."""
        slots: list = [None] * self.size
        for i, value in self.constants.items():
            slots[i] = value
        for n in self.feeds:
            slots[self.slot[n]] = values[n]
        for kernel, ins, out, free in self.steps:
            value = kernel(*[slots[i] for i in ins])
            if out.__class__ is int:
                slots[out] = value
            else:  # a fused step: several nodes' values
                for i, v in zip(out, value):
                    slots[i] = v
            for i in free:
                slots[i] = None
        return {o: slots[self.slot[o]] for o in self.outputs}


def _plan_steps(graph: nx.DiGraph, order: list[str], ready: set[str]) -> list[tuple]:
    """The schedule's steps ``(kernel, input names, computed names)`` in ``order``, where a node whose
    op offers a ``fused_forward`` with a later node sharing one of its inputs computes both in one
    step (at the earlier one's place, when all the later one's inputs are computed by then), and a
    node whose op offers a ``reuse_forward`` takes the earlier node's value too (``_reusing``)."""
    position = {n: i for i, n in enumerate(order)}
    fused: dict[str, tuple] = {}
    taken: set[str] = set()
    for n in order:
        if n in taken:
            continue
        node = graph.nodes[n]
        siblings = {s for i in node["inputs"] for s in graph.successors(i) if position.get(s, -1) > position[n] and s not in taken}
        for s in sorted(siblings, key=position.get):
            other = graph.nodes[s]
            if not all(i in ready or position.get(i, len(order)) < position[n] for i in other["inputs"]):
                continue
            for (a, x), (b, y) in (((n, node), (s, other)), ((s, other), (n, node))):  # either may offer it
                kernel = x["op"].fused_forward(tuple(x["inputs"]), y["op"], tuple(y["inputs"]))
                if kernel is not None:
                    fused[n] = (kernel, [*x["inputs"], *y["inputs"]], (a, b))
                    taken |= {n, s}
                    break
            if n in taken:
                break
    plan = []
    for n in order:
        if n in fused:
            plan.append(fused[n])
        elif n not in taken:
            plan.append(_reusing(graph, n, position) or (graph.nodes[n]["op"].forward, list(graph.nodes[n]["inputs"]), (n,)))
    return plan


def _reusing(graph: nx.DiGraph, n: str, position: dict[str, int]) -> tuple | None:
    """Node ``n``'s step taking an earlier node's value too, when its op offers a ``reuse_forward``
    with an earlier node that shares one of its inputs (a max pool's gradient, the pool's output)."""
    node = graph.nodes[n]
    for e in sorted({e for i in node["inputs"] for e in graph.successors(i) if position.get(e, len(position)) < position[n]},
                    key=position.get):
        kernel = node["op"].reuse_forward(tuple(node["inputs"]), graph.nodes[e]["op"], tuple(graph.nodes[e]["inputs"]))
        if kernel is not None:
            return kernel, [*node["inputs"], e], (n,)
    return None
