"""Loading a spec for training: the ``--set`` overrides applied, the ``train:`` section, the
compiled forward graph, the spec hash that identifies a run, and the data and label inputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import networkx as nx

from ..backends.engines import loss_parts
from ..errors import GraphcError, Loc
from ..ir.build import build_graph
from ..spec.load import validate_spec
from ..spec.models import TrainDecl
from ..spec.overrides import apply_set
from ..ir.params import PARAM_VALUES
from ..onnx_import import import_file, is_onnx_file
from ..spec.safe_yaml import load_yaml_file, load_yaml_text


def load_for_training(path: str | Path, sets: list[str] = (), overfit: bool = False):
    """The compiled forward graph, the ``train:`` settings and the effective spec data (after the
    ``--set`` overrides and the ``train.l2`` override of ``loss.l2``; no L2 at all when ``overfit``,
    as the course advises for that check), plus the blocks used."""
    path = str(path)
    imported = None
    if is_onnx_file(path):  # an ONNX model: its imported spec, trained from its parameters
        model = import_file(path)
        data, imported = load_yaml_text(model.text, path, document=True), model.params
    else:
        data = load_yaml_file(path)
    if not isinstance(data, dict):
        raise GraphcError("the spec must be a mapping", Loc(path, 1, 1))
    for text in sets:
        apply_set(data, text)
    loaded = validate_spec(path, data)
    if loaded.spec is None:
        raise GraphcError(loaded.errors)
    train = loaded.spec.train or TrainDecl()
    if loaded.spec.loss is None:
        raise GraphcError("the spec has no loss, so there is nothing to train", Loc(path, 1, 1),
                          "add a 'loss:' section, e.g. {op: softmax_cross_entropy, inputs: [logits, label]}")
    if train.l2 is not None or overfit:
        data["loss"]["l2"] = 0.0 if overfit else train.l2
    graph = build_graph(loaded)
    if imported is not None:
        graph.graph[PARAM_VALUES] = imported
    return graph, train, data, loaded.blocks


def canonical(data) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def spec_hash(data, blocks, extra: dict | None = None) -> str:
    """SHA-256 of the effective spec (after overrides), the blocks it uses and ``extra`` settings."""
    return hashlib.sha256(canonical({"spec": data, "blocks": blocks, "extra": extra or {}}).encode()).hexdigest()


# What may change when a run is continued with --resume: how long it trains and the learning-rate
# schedule from here on (epochs already trained keep the rates they had; metrics.csv records them).
RESUMABLE = ("train.epochs", "train.lr_decay")


def resumable(path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in RESUMABLE)


def core_hash(data, blocks, extra: dict | None = None) -> str:
    """:func:`spec_hash` without the :data:`RESUMABLE` settings: equal for a run and its continuation."""
    plain = json.loads(canonical(data))
    train = plain.get("train") if isinstance(plain, dict) else None
    if isinstance(train, dict):
        for path in RESUMABLE:
            train.pop(path.split(".", 1)[1], None)
    return spec_hash(plain, blocks, extra)


def flatten(data, prefix: str = "") -> dict[str, Any]:
    """``{'train.lr': 0.001, 'layers.0.units': 100, …}``: the leaves of nested data, by dotted path."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = data
    return out


def changed_paths(old, new) -> list[str]:
    a, b = flatten(old), flatten(new)
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def data_inputs(graph: nx.DiGraph) -> tuple[str, str]:
    """(data input, label input) of a spec: the loss reads the label; the data is the other input."""
    _, loss_op, _ = loss_parts(graph)
    inputs = [n for n, a in graph.nodes(data=True) if a["role"] == "input" and a["op"].kind == "input"]
    labels = [i for i in graph.nodes[loss_op]["inputs"] if i in inputs]
    data = [i for i in inputs if i not in labels]
    if len(labels) != 1 or len(data) != 1:
        raise GraphcError(f"graphc train needs one data input and one label input read by the loss; this spec has "
                          f"data inputs {data or '-'} and label inputs {labels or '-'}")
    return data[0], labels[0]
