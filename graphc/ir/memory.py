"""What evaluating a graph costs in memory, computed with Python integers from the inferred shapes
before anything is allocated, and the ``--max-memory`` limit it is checked against.

A tensor of type ``(d₁, …, d_k) dtype`` takes ``∏ dᵢ · itemsize`` bytes, every symbolic dim taken at
the size the command binds it to (the batch of ``--inputs``, ``--batch``, ``train.batch_size``). The
peak of one evaluation in topological order is then: every fed value (inputs, parameters, dropout
masks) for the whole run, plus each computed value from its node until its last consumer, the
graph's outputs, loss, gradients and updates until the end. On a training graph that counts the
forward activations the backward pass reads (its saved tensors) for exactly as long as it reads
them. Scratch space inside a kernel (a convolution's patches, say) is not counted.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from typing import TYPE_CHECKING

from ..errors import GraphcError
from ..tensor import DTYPE_BYTES, TensorType, fmt_shape

if TYPE_CHECKING:  # networkx is imported where it is used: ``--help`` parses --max-memory without it
    import networkx as nx

#: the default ``--max-memory``: this fraction of the machine's physical memory
DEFAULT_FRACTION = 0.5


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes of one evaluation, what is fed, and the largest single tensor."""

    peak: int
    fed: int
    largest: str
    largest_type: TensorType
    largest_bytes: int


def tensor_bytes(t: TensorType, sizes: dict[str, int], float_bytes: int | None = None) -> int:
    """``∏ dᵢ · itemsize`` with symbolic dims from ``sizes`` (1 when unbound); ``float_bytes`` overrides
    the item size of float tensors (8 for a float64 run)."""
    numel = math.prod(d if isinstance(d, int) else sizes.get(d, 1) for d in t.shape)
    item = float_bytes if float_bytes is not None and t.dtype != "int64" else DTYPE_BYTES[t.dtype]
    return numel * item


def _kept(graph: nx.DiGraph) -> set[str]:
    """Values a command returns: outputs, loss, gradients, updated running statistics."""
    g = graph.graph
    kept = set((g.get("outputs") or {}).values()) | set((g.get("grads") or {}).values()) | set((g.get("updates") or {}).values())
    return kept | ({g["loss"]} if g.get("loss") else set())


def estimate_memory(graph: nx.DiGraph, sizes: dict[str, int], float_bytes: int | None = None,
                    targets: set[str] | None = None) -> MemoryEstimate:
    """The peak bytes of evaluating ``targets`` (default: outputs, loss, gradients and updates) and
    what they depend on, once (see the module's docstring)."""
    import networkx as nx

    from .graph import topo_order

    kept = _kept(graph) if targets is None else set(targets)
    # only what the kept values depend on is evaluated (a forward run does not read the labels)
    needed = kept.union(*(nx.ancestors(graph, n) for n in kept)) if kept else set(graph)
    order = [n for n in topo_order(graph) if n in needed]
    size = {n: tensor_bytes(graph.nodes[n]["type"], sizes, float_bytes) for n in order}
    fed = {n for n in order if graph.nodes[n]["role"] in ("input", "param") or graph.nodes[n]["op"].kind == "random_mask"}
    position = {n: i for i, n in enumerate(order)}
    last_use = {n: max((position[s] for s in graph.successors(n) if s in position), default=position[n]) for n in order}
    live = sum(size[n] for n in fed)
    peak = live
    freed_at: dict[int, list[str]] = {}
    for n in order:
        if n not in fed and n not in kept:
            freed_at.setdefault(last_use[n], []).append(n)
    for i, n in enumerate(order):
        if n not in fed:
            live += size[n]
            peak = max(peak, live)
        live -= sum(size[m] for m in freed_at.get(i, ()))
    largest = max(order, key=lambda n: size[n]) if order else ""
    return MemoryEstimate(peak, sum(size[n] for n in fed), largest, graph.nodes[largest]["type"] if order else TensorType(()),
                          size.get(largest, 0))


def shown_type(t: TensorType, sizes: dict[str, int]) -> str:
    """``(N=4096, 64) float32``: the shape with the sizes its symbols are bound to."""
    dims = [str(d) if isinstance(d, int) else f"{d}={sizes.get(d, 1)}" for d in t.shape]
    return f"{fmt_shape(tuple(dims))} {t.dtype}"


def require_memory(graph: nx.DiGraph, sizes: dict[str, int], limit: int, what: str, float_bytes: int | None = None,
                   factor: int = 1, targets: set[str] | None = None) -> MemoryEstimate:
    """The estimate of ``graph``, or a one-line error when ``factor`` × its peak exceeds ``limit``."""
    est = estimate_memory(graph, sizes, float_bytes, targets)
    need = est.peak * factor
    if need > limit:
        t = est.largest_type
        largest = TensorType(t.shape, "float64") if float_bytes == 8 and t.dtype != "int64" else t
        raise GraphcError(f"{what} needs about {format_bytes(need)} ({need:,} bytes), more than --max-memory {format_bytes(limit)}; "
                          f"the largest tensor is '{est.largest}' {shown_type(largest, sizes)}, {format_bytes(est.largest_bytes)}",
                          hint="lower the batch or the layer sizes, or raise --max-memory")
    return est


def format_bytes(n: int) -> str:
    """``1.5 GiB``: binary units, three significant figures."""
    for unit, scale in (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            value = n / scale
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:,.0f} {unit}"
    return f"{n} B"


_UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "kb": 10**3, "m": 2**20, "mib": 2**20, "mb": 10**6,
          "g": 2**30, "gib": 2**30, "gb": 10**9, "t": 2**40, "tib": 2**40, "tb": 10**12}


def parse_bytes(text: str) -> int:
    """``4GiB``, ``512MiB``, ``2G`` (binary), ``8GB`` (decimal) or a plain number of bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"expected a size such as 4GiB, 512MiB or 8GB, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def size_argument(text: str) -> int:
    """``--max-memory``'s argparse type (:func:`parse_bytes`, its error shown as argparse's)."""
    import argparse

    try:
        return parse_bytes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


MAX_MEMORY_HELP = ("refuse to start when the estimated peak memory (inputs, parameters, activations, saved tensors) "
                   "exceeds SIZE: 4GiB, 512MiB, 8GB or bytes (default: half of the machine's physical memory)")


def physical_memory() -> int | None:
    """The machine's physical memory in bytes (None where the platform does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def default_max_memory() -> int:
    """``DEFAULT_FRACTION`` of physical memory (8 GiB where it is unknown)."""
    total = physical_memory()
    return int(total * DEFAULT_FRACTION) if total else 8 * 2**30
