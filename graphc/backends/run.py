"""Running graphs on the NumPy interpreter: input checking, parameters, dropout masks, one step.

Inputs are checked against the spec's declared names, shapes (symbolic dims bind consistently:
every ``N`` is the same size; symbolic sizes such as ``H`` then bind the whole graph, :func:`bind_sizes`) and dtypes (float inputs take any float array, integer inputs any
integer array; an integer input that ops index with — class labels, token ids — must lie in the range
they state, ``[0, bound)``), then cast to the run's dtype (float32 by default, float64 on request).
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from ..errors import Diagnostic, GraphcError, did_you_mean
from ..files import array_headers, load_arrays
from ..ir.analysis import index_bound
from .interpreter import Program


def data_inputs(graph: nx.DiGraph) -> dict[str, dict]:
    return {n: a for n, a in graph.nodes(data=True) if a["role"] == "input" and a["op"].kind == "input"}


def check_inputs(graph: nx.DiGraph, arrays: dict[str, np.ndarray], source: str, dtype=np.float32,
                 needed: set[str] | None = None) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The arrays cast for the run, and the sizes bound to symbolic dims. ``needed``: inputs that must be given."""
    declared = data_inputs(graph)
    needed = set(declared) if needed is None else needed
    errors, out, sizes = [], {}, {}
    for name in arrays:
        if name not in declared:
            errors.append(Diagnostic(f"{source} has '{name}', which is not an input of the spec", hint=did_you_mean(name, declared, "input")))
    for name in sorted(needed - set(arrays)):
        shape = declared[name]["type"].shape
        errors.append(Diagnostic(f"{source} lacks input '{name}' ({', '.join(map(str, shape))})",
                                 hint=f"add an array '{name}' to the file"))
    for name, a in declared.items():
        if name not in arrays:
            continue
        value, want = arrays[name], a["type"]
        shape_ok = value.ndim == want.rank
        if shape_ok:
            for got, dim in zip(value.shape, want.shape):
                if isinstance(dim, int):
                    shape_ok &= got == dim
                elif sizes.setdefault(dim, got) != got:
                    errors.append(Diagnostic(f"{source}: '{name}' has {dim} = {got}, but another input has {dim} = {sizes[dim]}"))
        if not shape_ok:
            errors.append(Diagnostic(f"{source}: '{name}' has shape {value.shape}, the spec declares ({', '.join(map(str, want.shape))})"))
            continue
        if want.dtype == "int64":
            if value.dtype.kind not in "iu":
                errors.append(Diagnostic(f"{source}: '{name}' has dtype {value.dtype}, the spec declares int64 (class indices)"))
                continue
            out[name] = value.astype(np.int64, copy=False)
            bound = index_bound(graph, name)
            if bound is not None and value.size and (value.min() < 0 or value.max() >= bound):
                bad = np.flatnonzero((value < 0) | (value >= bound))[0]
                at = [int(i) for i in np.unravel_index(bad, value.shape)]
                errors.append(Diagnostic(f"{source}: '{name}' holds {int(value.flat[bad])} at index {at}, outside [0, {bound}), "
                                         f"the range its layers index with (class count, num_embeddings)"))
        else:
            if value.dtype.kind not in "fiu" or value.dtype == np.bool_:
                errors.append(Diagnostic(f"{source}: '{name}' has dtype {value.dtype}, the spec declares {want.dtype}"))
                continue
            out[name] = value.astype(dtype, copy=False)
    if errors:
        raise GraphcError(errors)
    return out, sizes


def check_headers(graph: nx.DiGraph, headers: dict[str, tuple[tuple[int, ...], np.dtype]], source: str) -> dict[str, int]:
    """The sizes bound to symbolic dims by arrays known from their headers only (:func:`array_headers`):
    every array the spec declares must have its rank, static sizes, consistent symbolic sizes and a
    dtype of the right kind. Names the spec does not declare and missing inputs are left to
    :func:`check_inputs`, which sees the command's needs."""
    declared = data_inputs(graph)
    errors, sizes = [], {}
    for name, (shape, dtype) in headers.items():
        if name not in declared:
            continue
        want = declared[name]["type"]
        shown = f"({', '.join(map(str, want.shape))})"
        if len(shape) != want.rank or any(isinstance(d, int) and got != d for got, d in zip(shape, want.shape)):
            errors.append(Diagnostic(f"{source}: '{name}' has shape {shape}, the spec declares {shown}"))
            continue
        for got, dim in zip(shape, want.shape):
            if isinstance(dim, str) and sizes.setdefault(dim, got) != got:
                errors.append(Diagnostic(f"{source}: '{name}' has {dim} = {got}, but another input has {dim} = {sizes[dim]}"))
        kinds = "iu" if want.dtype == "int64" else "fiu"
        if dtype.kind not in kinds or dtype == np.bool_:
            errors.append(Diagnostic(f"{source}: '{name}' has dtype {dtype}, the spec declares {want.dtype}"))
    if errors:
        raise GraphcError(errors)
    return sizes


def bind_sizes(graph: nx.DiGraph, path=None, arrays: dict | None = None, source: str = "--inputs") -> nx.DiGraph:
    """``graph`` with its symbolic sizes (``H``, ``W`` of an input ``[N, 3, H, W]``) bound from the
    inputs: from the headers of the file ``path`` (nothing read yet) or from ``arrays``. Every input
    that names a size must agree on it (:func:`check_headers`); then every shape is re-inferred with
    the ints (:func:`graphc.ir.analysis.specialize`): an expression that comes out below 1 for these
    sizes, or an op that cannot take them, is a located error naming the sizes. A graph with no
    symbolic size is returned as it is."""
    from ..ir.analysis import graph_size_names, specialize

    names = graph_size_names(graph)
    if not names:
        return graph
    headers = array_headers(path, source) if arrays is None else {n: (a.shape, a.dtype) for n, a in arrays.items()}
    sizes = check_headers(graph, headers, source)
    unbound = sorted(names - set(sizes))
    if unbound:
        wanting = sorted(n for n, a in data_inputs(graph).items() if set(unbound) & {str(d) for d in a["type"].shape})
        raise GraphcError(f"{source} binds no size {', '.join(unbound)}: the spec's symbolic sizes are read from its inputs' shapes",
                          hint=f"give {', '.join(repr(n) for n in wanting)}")
    return specialize(graph, {n: sizes[n] for n in names}, source)


def load_inputs(graph: nx.DiGraph, path, before_reading=None, source: str = "--inputs") -> dict[str, np.ndarray]:
    """The arrays of the file ``path``, the headers checked against the spec first
    (:func:`check_headers`): an array of the wrong shape or dtype is refused before any of it is read
    or inflated, so a small file holding gigabytes of zeros costs nothing. ``before_reading`` is
    called with the symbolic sizes the headers bind (to check the memory a run needs) before that."""
    sizes = check_headers(graph, array_headers(path, source), source)
    if before_reading is not None:
        before_reading(sizes)
    return load_arrays(path, source)


def load_params(graph: nx.DiGraph, path, source: str = "--params") -> dict[str, np.ndarray]:
    """The parameter arrays of the file ``path``, each header checked against the spec's parameter
    first (name, shape, a float dtype), so a wrong or inflated array is refused before it is read."""
    from ..ir.params import param_nodes

    params = param_nodes(graph)
    errors = []
    for name, (shape, dtype) in array_headers(path, source).items():
        if name not in params:
            errors.append(Diagnostic(f"{source} has '{name}', which is not a parameter of this spec", hint=did_you_mean(name, params, "parameter")))
        elif shape != tuple(params[name]["op"].shape):
            errors.append(Diagnostic(f"{source}: '{name}' has shape {shape}, the spec needs {tuple(params[name]['op'].shape)}"))
        elif dtype.kind != "f":
            errors.append(Diagnostic(f"{source}: '{name}' has dtype {dtype}, expected floating point"))
    if errors:
        raise GraphcError(errors)
    return load_arrays(path, source)


def draw_masks(graph: nx.DiGraph, sizes: dict[str, int], seed: int, dtype=np.float32) -> dict[str, np.ndarray]:
    """Inverted-dropout masks ``Bernoulli(1 − p)/(1 − p)`` for every RandomMask of a training graph."""
    rng = np.random.default_rng([seed, 0x6d61736b])
    out = {}
    for n, a in sorted(graph.nodes(data=True)):
        if a["op"].kind == "random_mask":
            shape = tuple(d if isinstance(d, int) else sizes[d] for d in a["op"].shape)
            keep = 1.0 - a["op"].p
            out[n] = ((rng.random(shape) < keep) / keep).astype(dtype)
    return out


def run_forward(graph: nx.DiGraph, inputs: dict, params: dict, dtype=np.float32) -> dict[str, np.ndarray]:
    """The spec's outputs, by output name."""
    outputs = graph.graph["outputs"]
    needed = set()
    for node in outputs.values():
        needed |= {n for n in nx.ancestors(graph, node) | {node} if graph.nodes[n]["role"] == "input"}
    feeds, _ = check_inputs(graph, inputs, "--inputs", dtype, needed)
    values = {**feeds, **{k: v.astype(dtype, copy=False) for k, v in params.items()}}
    result = Program(graph, list(outputs.values())).run(values)
    return {name: result[node] for name, node in outputs.items()}


def run_training_step(training: nx.DiGraph, inputs: dict, params: dict, seed: int = 0, dtype=np.float32):
    """(loss, {param: gradient}, {running stat: updated value}) for one batch."""
    loss = training.graph["loss"]
    grads = training.graph["grads"]
    updates = training.graph.get("updates", {})
    feeds, sizes = check_inputs(training, inputs, "--inputs", dtype)
    values = {**feeds, **{k: v.astype(dtype, copy=False) for k, v in params.items()}, **draw_masks(training, sizes, seed, dtype)}
    targets = [loss] + list(grads.values()) + list(updates.values())
    result = Program(training, targets).run(values)
    return result[loss], {p: result[g] for p, g in grads.items()}, {p: result[u] for p, u in updates.items()}


def run_forward_ort(graph: nx.DiGraph, inputs: dict, params: dict, device: str = "auto"):
    """The spec's outputs computed by onnxruntime from the exported forward graph; and the provider."""
    from .onnx_export import forward_model
    from .ort import run, session

    sess, provider = session(forward_model(graph, None), device)
    needed = {i.name for i in sess.get_inputs()}
    feeds, _ = check_inputs(graph, inputs, "--inputs", np.float32, needed & set(data_inputs(graph)))
    return run(sess, {**feeds, **params}), provider


def run_training_step_ort(training: nx.DiGraph, inputs: dict, params: dict, seed: int = 0, device: str = "auto"):
    """As :func:`run_training_step`, computed by onnxruntime from the exported training step."""
    from .onnx_export import training_model
    from .ort import run, session

    sess, provider = session(training_model(training, None), device)
    feeds, sizes = check_inputs(training, inputs, "--inputs", np.float32)
    out = run(sess, {**feeds, **params, **draw_masks(training, sizes, seed)})
    grads = {p: out[f"grad/{p}"] for p in training.graph["grads"]}
    updates = {p: out[f"new/{p}"] for p in training.graph.get("updates", {})}
    return (out["loss"], grads, updates), provider
