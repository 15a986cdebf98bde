"""A trained model as one thing: the parameters of a run directory (or a file) together with the
input transform training applied, as nodes of the forward graph (graphc.ir.preprocess).

``--params RUN_DIR`` (or a parameter file inside a run directory, such as ``RUN_DIR/final.npz``)
brings the run's ``normalization.npz``: the graph gets ``<x>.normalize`` in front of the data input
and the parameters get ``<x>.normalize.mean`` and ``<x>.normalize.scale``, so raw inputs give the
trained predictions. A parameter file that carries those two arrays (``run --save-params`` writes
them) brings its normalisation along in the same way. Reshaping the data file's examples to the
spec's input shape and the float32 cast are data loading, not part of the model: the model's input
is the spec's input.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import networkx as nx
import numpy as np

from ..errors import GraphcError
from ..files import array_headers, load_arrays
from ..ir.params import initial_params
from ..ir.preprocess import normalization_names, with_input_normalization
from .run import load_params


def run_params(path) -> Path:
    """``--params`` may name a run directory: its ``best.npz``."""
    path = Path(path)
    if path.is_dir():
        best = path / "best.npz"
        if not best.is_file():
            raise GraphcError(f"--params {path}: a directory without best.npz (not a finished graphc training run?)")
        return best
    return path


def run_dir_of(path) -> Path | None:
    """The run directory ``--params`` names or lies in (it has a ``run.json``), else None."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return folder if (folder / "run.json").is_file() else None


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _data_input(graph: nx.DiGraph, run_dir: Path | None) -> str:
    """The input training normalised: named in run.json, else the data input beside the loss's label."""
    if run_dir is not None:
        try:
            name = json.loads((run_dir / "run.json").read_text()).get("data_input")
        except (OSError, json.JSONDecodeError):
            name = None
        if name:
            return name
    floats = [n for n, a in graph.nodes(data=True) if a["role"] == "input" and a["op"].kind == "input"
              and a["type"].dtype.startswith("float")]
    if graph.graph.get("loss") is not None:  # as graphc train picks it: the input beside the loss's label
        from .engines import loss_parts

        _, loss_op, _ = loss_parts(graph)
        beside = [n for n in floats if n not in graph.nodes[loss_op]["inputs"]]
        if len(beside) == 1:
            return beside[0]
    if len(floats) == 1:
        return floats[0]
    raise GraphcError(f"--params {run_dir}: cannot tell which input the run's normalisation applies to "
                      f"(float inputs: {', '.join(floats) or '-'})")


def load_model_params(graph: nx.DiGraph, file, source: str = "--params"):
    """(the parameter arrays of ``file``, (input, mean, scale) when the file carries an input's
    normalisation, else None). Every header is checked against the spec before anything is read."""
    headers = array_headers(file, source)
    carried = None
    for n, a in graph.nodes(data=True):
        names = normalization_names(n)
        if a["role"] == "input" and names["mean"] in headers and names["scale"] in headers:
            carried = n
    if carried is None:
        return load_params(graph, file, source), None
    arrays = load_params(with_input_normalization(graph, carried, headers[normalization_names(carried)["mean"]][0]), file, source)
    names = normalization_names(carried)
    return arrays, (carried, arrays.pop(names["mean"]), arrays.pop(names["scale"]))


def trained_model(graph: nx.DiGraph, params_arg, seed: int = 0) -> tuple[nx.DiGraph, dict[str, np.ndarray], str | None]:
    """(the forward graph with the run's input normalisation, every parameter's value, a note for
    stderr saying what was added — or None)."""
    if not params_arg:
        return graph, initial_params(graph, seed), None
    file = run_params(params_arg)
    given, carried = load_model_params(graph, file)
    run_dir = run_dir_of(params_arg)
    if carried is not None:
        name, mean, scale = carried
        origin = str(file)
    elif run_dir is not None and (run_dir / "normalization.npz").is_file():
        norm = load_arrays(run_dir / "normalization.npz", "normalization")  # written by graphc.train.data.Normalization
        name, mean, scale = _data_input(graph, run_dir), norm["mean"], norm["scale"]
        origin = str(run_dir / "normalization.npz")
    else:
        return graph, initial_params(graph, seed, given), None
    mean, scale = np.asarray(mean, np.float32), np.asarray(scale, np.float32).reshape(())
    if not np.any(mean) and scale == 1:
        return graph, initial_params(graph, seed, given), None  # training applied no transform
    model = with_input_normalization(graph, name, mean.shape)
    names = normalization_names(name)
    params = initial_params(model, seed, {**given, names["mean"]: mean, names["scale"]: scale})
    note = (f"input '{name}' is normalised as in training: {names['layer']} = ({name} − mean) / {float(scale):.6g}, "
            f"mean of shape {mean.shape} (from {origin})")
    return model, params, note


__all__ = ["file_sha256", "run_dir_of", "run_params", "load_model_params", "trained_model"]
