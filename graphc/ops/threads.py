"""Elementwise kernels split over the machine's cores, by blocks of their leading axis.

BLAS runs a GEMM on every core, but a NumPy ufunc or copy runs on one: in a training step the
activations, batchnorm, the optimiser's updates and the im2col copies would leave the other cores
idle. NumPy releases the GIL inside ufunc loops and copies, so a few Python threads working on
disjoint blocks of the same arrays run in parallel. Each block is still one vectorised call; the
values are those of one call over the whole array (elementwise work, and per-row reductions summed
after, do not depend on the split).

Only NumPy's own loops run on these threads, never a GEMM: the main thread keeps every BLAS call,
so BLAS threads and these never run at once (BLAS threads × these ≤ cores), and OpenBLAS is never
entered from two threads at once.

The count: ``GRAPHC_THREADS``, else ``OMP_NUM_THREADS`` or ``OPENBLAS_NUM_THREADS`` (the BLAS's own
setting, so that one thread means one thread everywhere), else the cores this process may run on.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def _default_count() -> int:
    for var in ("GRAPHC_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.strip().isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


#: threads an elementwise kernel is split over (1: never split)
COUNT = _default_count()
#: fewer elements than this run in one call: a hand-off to another thread costs about 10–20 µs
MIN_ITEMS = 1 << 16

_POOL: ThreadPoolExecutor | None = None


def set_count(n: int) -> None:
    """Split kernels over ``n`` threads from now on (1: never)."""
    global COUNT
    COUNT = max(1, int(n))


def blocks(n: int, items: int) -> list[slice]:
    """The blocks of a leading axis of length ``n`` over ``items`` elements in all: one block when
    the work is small or there is one thread, else up to ``COUNT`` blocks of nearly equal length."""
    parts = min(COUNT, n, max(1, items // MIN_ITEMS))
    if parts <= 1:
        return [slice(0, n)]
    edges = [n * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(edges, edges[1:])]


def over_blocks(fn, n: int, items: int) -> None:
    """``fn(block)`` for every block of ``blocks(n, items)``, all but the first on the pool's threads,
    the first on this one; returns when all are done (re-raising the first error). ``fn`` must write
    disjoint parts of its outputs and must not call BLAS."""
    parts = blocks(n, items)
    if len(parts) == 1:
        fn(parts[0])
        return
    global _POOL
    if _POOL is None or _POOL._max_workers < len(parts) - 1:
        _POOL = ThreadPoolExecutor(max(COUNT - 1, len(parts) - 1), thread_name_prefix="graphc-kernel")
    futures = [_POOL.submit(fn, p) for p in parts[1:]]
    try:
        fn(parts[0])
    finally:
        for f in futures:
            f.result()


def _part(a, ndim: int, n: int, block: slice):
    """``a``'s share of a block of an ``ndim``-dimensional result with leading length ``n``: its rows
    when it has that axis, the whole of it when it is broadcast along it."""
    if isinstance(a, np.ndarray) and a.ndim == ndim and a.shape[0] == n and n > 1:
        return a[block]
    return a


def ufunc(f: np.ufunc, *args, out: np.ndarray | None = None, dtype=None) -> np.ndarray:
    """``f(*args)`` (NumPy broadcasting; ``dtype`` as the ufunc's) into ``out`` or a fresh array,
    split by blocks of the result's leading axis."""
    if out is None:
        if COUNT == 1:  # the common small cases cost no more than the plain call
            return f(*args, dtype=dtype)
        shapes = [np.shape(a) for a in args]
        shape = shapes[0] if all(s == shapes[0] for s in shapes) else np.broadcast_shapes(*shapes)
        if math.prod(shape) < MIN_ITEMS:
            return f(*args, dtype=dtype)
        types = tuple(a.dtype if isinstance(a, np.ndarray) else None for a in args)
        if dtype is not None:
            result = np.dtype(dtype)
        elif None in types:  # a Python scalar: let NumPy resolve its (weak) type on a sample
            result = f(*(a.ravel()[:1] if isinstance(a, np.ndarray) else a for a in args)).dtype
        else:
            result = f.resolve_dtypes(types + (None,))[-1]
        out = np.empty(shape, dtype=result)
    if out.ndim == 0 or COUNT == 1 or out.size < MIN_ITEMS:
        return f(*args, out=out, dtype=dtype)
    n = out.shape[0]
    over_blocks(lambda b: f(*(_part(a, out.ndim, n, b) for a in args), out=out[b], dtype=dtype), n, out.size)
    return out


def copy(src: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``src`` copied into ``out`` (or a fresh C-contiguous array of its shape), split by blocks of the
    leading axis: the im2col columns and layout changes."""
    if out is None:
        out = np.empty(src.shape, dtype=src.dtype)
    if out.ndim == 0 or COUNT == 1 or out.size < MIN_ITEMS:
        np.copyto(out, src)
        return out
    n = out.shape[0]
    over_blocks(lambda b: np.copyto(out[b], _part(src, out.ndim, n, b)), n, out.size)
    return out
