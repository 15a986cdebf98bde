"""Building one-op graphs from registry samples, with concrete values, for the generated tests."""

from __future__ import annotations

import numpy as np

from graphc.ir.analysis import index_bound
from graphc.ir.graph import Builder, LayerContext
from graphc.ops.elementwise import Mul
from graphc.ops.reduce import ReduceSum

SYMBOL_SIZE = 2


def concrete(shape):
    return tuple(d if isinstance(d, int) else SYMBOL_SIZE for d in shape)


def one_op_graph(cls, s):
    """``loss = Σ op(inputs) ⊙ r`` for a fixed random ``r``: its gradient is the VJP of ``r``."""
    b = Builder()
    names = [b.input(f"in{i}", concrete(x.shape), x.dtype) for i, x in enumerate(s.inputs)]
    b.context = LayerContext("layer")
    op = cls.model_validate(s.attrs)
    out = op.expand(b, "layer", names)
    y = b.type_of(out)
    b.input("r", y.shape, y.dtype)
    b.context = LayerContext("loss", role="loss")
    b.op("prod", Mul(), [out, "r"])
    b.op("loss", ReduceSum(), ["prod"])
    return b.graph, out


def sample_values(graph, seed: int = 0, dtype=np.float64, positive=()) -> dict[str, np.ndarray]:
    """Random values for every input and parameter; integer inputs are indices in [0, bound) of the op
    reading them (class labels, token ids; 2 when it states none);
    the inputs ``in<i>`` for ``i`` in ``positive`` are drawn from [0.5, 1.5]."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, a in graph.nodes(data=True):
        if a["role"] not in ("input", "param"):
            continue
        shape = tuple(a["type"].shape)
        if a["type"].dtype == "int64":
            values[name] = rng.integers(0, index_bound(graph, name) or 2, size=shape).astype(np.int64)
        elif name.endswith("running_var") or name in {f"in{i}" for i in positive}:
            values[name] = rng.uniform(0.5, 1.5, size=shape).astype(dtype)
        else:
            values[name] = rng.standard_normal(shape).astype(dtype)
    return values
