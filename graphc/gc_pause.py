"""Python's cyclic garbage collector paused around bulk work (loading, building, analysing a spec).

Compiling allocates many objects that all stay alive until the end (positions, layers, IR nodes,
fractions), none of them garbage; each automatic collection walks them all again, so with the
collector on, compile time per layer grew with the size of the spec (``tools/bench_compile.py``:
half of a 10,000-layer compile was collection). Paused, the cost per layer stays flat; cycles made
meanwhile are collected by the next automatic collection after the work.
"""

from __future__ import annotations

import functools
import gc
from contextlib import contextmanager


@contextmanager
def gc_paused():
    """No automatic collection inside the block; nesting keeps the outermost state."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def without_gc(fn):
    """``fn`` run under :func:`gc_paused`."""
    @functools.wraps(fn)
    def paused(*args, **kwargs):
        with gc_paused():
            return fn(*args, **kwargs)
    return paused
