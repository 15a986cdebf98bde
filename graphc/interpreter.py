"""The NumPy interpreter (DESIGN.md §6): a schedule computed once, then a short loop.

The schedule lists, for each node needed by the requested outputs, its kernel, the slots of its
inputs and the slots to release after it (each buffer is freed after its last use). Feeds (inputs,
parameters, random masks) fill their slots directly.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import networkx as nx
import numpy as np

from .graph import topo_order

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
        last_use: dict[str, int] = {}
        fed = set(self.feeds)
        for step, n in enumerate(order):
            for i in () if n in fed else graph.nodes[n]["inputs"]:
                last_use[i] = step
        keep = set(outputs)
        frees: dict[int, list[int]] = {}
        for n, step in last_use.items():
            if n not in keep:
                frees.setdefault(step, []).append(self.slot[n])
        # constants (the loss seed, say) are computed here once, not on every run; read-only, as
        # every run shares them
        self.constants = {self.slot[n]: graph.nodes[n]["op"].forward() for n in order
                          if graph.nodes[n]["op"].kind == "const" and n not in self.feeds}
        for value in self.constants.values():
            value.flags.writeable = False
        self.steps = [
            (graph.nodes[n]["op"].forward, tuple(self.slot[i] for i in graph.nodes[n]["inputs"]), self.slot[n], tuple(frees.get(step, ())))
            for step, n in enumerate(order) if n not in self.feeds and self.slot[n] not in self.constants
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
            slots[out] = kernel(*[slots[i] for i in ins])
            for i in free:
                slots[i] = None
        return {o: slots[self.slot[o]] for o in self.outputs}
