"""Parameter values: the spec's initialisers, and checking values given in a file.

Initialisers (fan-in/fan-out from the parameter's layout: dense ``(in, out)``, conv ``OIHW``):
``xavier`` N(0, 2/(fan_in + fan_out)); ``kaiming`` N(0, 2/fan_in); ``normal`` N(0, std²);
``uniform`` U(−limit, limit); ``zeros``, ``ones``, ``constant``. Each parameter draws from its own
generator seeded by (seed, name), so adding a layer does not change the others' values.
"""

from __future__ import annotations

import math
import zlib

import networkx as nx
import numpy as np

from ..errors import Diagnostic, GraphcError, did_you_mean


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) >= 3:
        receptive = math.prod(shape[2:])
        return shape[1] * receptive, shape[0] * receptive
    n = shape[0] if shape else 1
    return n, n


def initial_value(name: str, shape: tuple[int, ...], init, seed: int, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    fan_in, fan_out = fans(tuple(shape))
    kind = init.kind
    if kind == "zeros":
        return np.zeros(shape, dtype)
    if kind == "ones":
        return np.ones(shape, dtype)
    if kind == "constant":
        return np.full(shape, init.value, dtype)
    if kind == "uniform":
        return rng.uniform(-init.limit, init.limit, size=shape).astype(dtype)
    std = {"xavier": math.sqrt(2.0 / (fan_in + fan_out)), "kaiming": math.sqrt(2.0 / fan_in), "normal": init.std}[kind]
    return (rng.standard_normal(shape) * std).astype(dtype)


def param_nodes(graph: nx.DiGraph) -> dict[str, dict]:
    return {n: a for n, a in graph.nodes(data=True) if a["role"] == "param"}


def initial_params(graph: nx.DiGraph, seed: int = 0, given: dict[str, np.ndarray] | None = None, source: str = "--params") -> dict[str, np.ndarray]:
    """Every parameter: from ``given`` where present (checked), else from its initialiser."""
    given = dict(given or {})
    params = param_nodes(graph)
    errors = []
    unknown = [k for k in given if k not in params]
    for k in unknown:
        errors.append(Diagnostic(f"{source} has '{k}', which is not a parameter of this spec", hint=did_you_mean(k, params, "parameter")))
    out = {}
    for name, a in params.items():
        shape = tuple(a["op"].shape)
        if name in given:
            value = given[name]
            if value.shape != shape:
                errors.append(Diagnostic(f"{source}: '{name}' has shape {value.shape}, the spec needs {shape}"))
            elif value.dtype.kind != "f":
                errors.append(Diagnostic(f"{source}: '{name}' has dtype {value.dtype}, expected floating point"))
            out[name] = value.astype(np.float32, copy=False)
        else:
            out[name] = initial_value(name, shape, a["op"].init, seed)
    if errors:
        raise GraphcError(errors)
    return out
