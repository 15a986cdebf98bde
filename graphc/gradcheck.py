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
