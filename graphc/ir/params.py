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


#: the graph attribute holding the parameter values a graph comes with (an imported ONNX model's, or
#: those of the spec's ``params:`` file once read)
PARAM_VALUES = "param_values"


def spec_params(graph: nx.DiGraph) -> tuple[dict[str, np.ndarray], str]:
    """The parameter values the graph comes with and where they are from: an imported model's, or
    the spec's ``params:`` file (its headers checked against the spec before it is read), else none."""
    from ..files import array_headers, load_arrays

    file = graph.graph.get("params_file")
    if PARAM_VALUES not in graph.graph and file:
        shapes = {n: tuple(a["op"].shape) for n, a in param_nodes(graph).items()}
        wrong = [f"'{k}' has shape {shape}, the spec needs {shapes[k]}" for k, (shape, _) in array_headers(file, "params").items()
                 if k in shapes and tuple(shape) != shapes[k]]
        if wrong:
            raise GraphcError([Diagnostic(f"the spec's params file {file}: {w}") for w in wrong])
        graph.graph[PARAM_VALUES] = load_arrays(file, f"the spec's params file {file}")
    return graph.graph.get(PARAM_VALUES) or {}, f"the spec's params file {file}" if file else "the imported model"


def initial_params(graph: nx.DiGraph, seed: int = 0, given: dict[str, np.ndarray] | None = None, source: str = "--params") -> dict[str, np.ndarray]:
    """Every parameter: from ``given`` where present (checked), else from the values the graph comes
    with (:func:`spec_params`, checked likewise), else from its initialiser."""
    given = dict(given or {})
    stored, origin = spec_params(graph)
    sources = {**dict.fromkeys(stored, origin), **dict.fromkeys(given, source)}
    given = {**stored, **given}
    params = param_nodes(graph)
    errors = []
    unknown = [k for k in given if k not in params]
    for k in unknown:
        errors.append(Diagnostic(f"{sources[k]} has '{k}', which is not a parameter of this spec", hint=did_you_mean(k, params, "parameter")))
    out = {}
    for name, a in params.items():
        shape = tuple(a["op"].shape)
        if name in given:
            value = given[name]
            if value.shape != shape:
                errors.append(Diagnostic(f"{sources[name]}: '{name}' has shape {value.shape}, the spec needs {shape}"))
            elif value.dtype.kind != "f":
                errors.append(Diagnostic(f"{sources[name]}: '{name}' has dtype {value.dtype}, expected floating point"))
            out[name] = value.astype(np.float32, copy=False)
        else:
            out[name] = initial_value(name, shape, a["op"].init, seed)
    if errors:
        raise GraphcError(errors)
    return out
