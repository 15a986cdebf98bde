"""The spec's ``train:`` section (what ``graphc train`` reads), ``--set`` overrides, and the spec hash.

The loss itself stays in the spec's ``loss:`` section; ``train:`` holds everything else about a run:
the data source and its split and normalisation, the optimiser and its hyperparameters, the
learning-rate decay, an L2 override, initialiser overrides, epochs, batches, seed, model selection
and early stopping. Every value has a default, so a spec without ``train:`` trains on the digits.

``--set train.lr=3e-4`` assigns a value (read as a YAML scalar: ``1e-3`` is a number, ``null`` is
null) at a dotted path into the spec's data before it is validated; paths are checked against the
spec's structure (with did-you-mean), so a typo is an error, never a silently ignored key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import networkx as nx
from pydantic import BaseModel, Field, field_validator

from .errors import Diagnostic, GraphcError, Loc, did_you_mean
from .spec import InitDecl, InitName, LayerEntry, Strict

DATA_SETS = ("digits",)


class SplitDecl(Strict):
    """How examples are held out, reproducibly (``seed``; stratified by class for integer labels).

    ``test``: the fraction of all examples kept for the final test (when the data has no ``x_test``);
    ``val``: the fraction of the remaining training examples kept for validation (when the data has
    no ``x_val``); 0 means none (model selection and early stopping then watch the training split).
    """

    test: Annotated[float, Field(ge=0, lt=1)] = 0.3
    val: Annotated[float, Field(ge=0, lt=1)] = 0.1
    seed: int = 0
    stratify: bool = True


class NormalizeDecl(Strict):
    """Input normalisation, computed on the training split only and applied to every split.

    ``center``: subtract the training mean of each feature (``per_feature``, the course's mean
    image), one global mean (``global``) or nothing. ``scale``: then divide by the standard deviation
    of the centred training data (``std``, one number), by its largest absolute value (``max``) or
    not at all (``none``).
    """

    center: Literal["per_feature", "global", "none"] = "per_feature"
    scale: Literal["std", "max", "none"] = "std"


class LRDecayDecl(Strict):
    """Learning-rate decay per epoch ``e`` (starting at 0), from the course:
    ``step``: ``lr·rate^⌊e/every⌋``; ``exponential``: ``lr·rate^e``; ``inverse_time`` (1/t):
    ``lr/(1 + rate·e)``; ``none``: ``lr``."""

    kind: Literal["none", "step", "exponential", "inverse_time"] = "none"
    rate: Annotated[float, Field(gt=0)] = 0.5
    every: Annotated[int, Field(ge=1)] = 1


class EarlyStoppingDecl(Strict):
    """Stop when the monitored metric has not improved by more than ``min_delta`` for ``patience`` epochs."""

    patience: Annotated[int, Field(ge=1)] = 5
    min_delta: Annotated[float, Field(ge=0)] = 0.0


class TrainDecl(Strict):
    """How ``graphc train`` trains the spec (the loss is the spec's ``loss:``).

    ``data``: ``digits`` (scikit-learn's 8×8 digits, 1,797 examples, no download) or a path to an
    ``.npz`` (relative to the spec) with ``x_train``, ``y_train`` and optionally ``x_val``/``y_val``,
    ``x_test``/``y_test``. Features are reshaped to the spec's data input when the element counts
    match (64 digits pixels → ``(N, 1, 8, 8)``). ``optimizer`` and its hyperparameters (``momentum``
    μ for momentum/Nesterov, ``rho`` ρ for RMSProp, ``beta1``, ``beta2``, ``eps`` for Adam/RMSProp);
    ``l2`` overrides the loss's L2 strength; ``init`` maps parameter names or glob patterns
    (``fc1.weight``, ``*.bias``) to initialisers, overriding the spec's; ``monitor`` picks the
    validation metric that selects ``best.npz`` and drives ``early_stopping``; ``overfit_epochs``
    caps ``--overfit K`` runs, which stop at 100 % training accuracy.
    """

    data: str = "digits"
    split: SplitDecl = SplitDecl()
    normalize: NormalizeDecl = NormalizeDecl()
    optimizer: Literal["sgd", "momentum", "nesterov", "rmsprop", "adam"] = "adam"
    lr: Annotated[float, Field(gt=0)] = 1e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    rho: Annotated[float, Field(gt=0, lt=1)] = 0.99
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.999
    eps: Annotated[float, Field(gt=0)] = 1e-8
    lr_decay: LRDecayDecl = LRDecayDecl()
    l2: Annotated[float, Field(ge=0)] | None = None
    init: dict[str, InitName | InitDecl] = {}
    epochs: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    batch_size: Annotated[int, Field(ge=1)] = 64
    eval_batch_size: Annotated[int, Field(ge=1)] = 1024
    shuffle: bool = True
    seed: int = 0
    monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    early_stopping: EarlyStoppingDecl | None = None
    overfit_epochs: Annotated[int, Field(ge=1)] = 200

    @field_validator("data")
    @classmethod
    def _data_source(cls, v: str) -> str:
        if v not in DATA_SETS and not v.endswith(".npz"):
            raise ValueError(f"must be a data set name ({', '.join(DATA_SETS)}) or a path to an .npz file")
        return v


# --- --set overrides -----------------------------------------------------------------------------

def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``'train.lr=3e-4'`` → (``['train', 'lr']``, ``0.0003``); the value is read as YAML."""
    from .yamlsafe import load_yaml_text

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise GraphcError(f"--set {text}: expected KEY=VALUE, for example --set train.lr=3e-4")
    path = key.strip().split(".")
    if any(not p for p in path):
        raise GraphcError(f"--set {text}: '{key}' is not a dotted path (empty part)")
    try:
        value = load_yaml_text(raw, f"--set {key}") if raw.strip() else None
    except GraphcError as e:
        raise GraphcError(f"--set {text}: cannot read the value: {e.diagnostics[0].message}") from None
    return path, _plain(value)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _shape(annotation):
    """What a field holds, for walking ``--set`` paths: ``("model", M)``, ``("map", item)``,
    ``("list", item)`` or ``("leaf",)`` (through ``X | None`` and ``Annotated``)."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return ("model", annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict:
        return ("map", _shape(args[1]) if len(args) == 2 else ("leaf",))
    if origin is list:
        return ("list", _shape(args[0]) if args else ("leaf",))
    for arg in args:  # unions and Annotated: the first structured alternative
        found = _shape(arg)
        if found[0] != "leaf":
            return found
    return ("leaf",)


def _allowed_keys(model: type[BaseModel], node) -> list[str]:
    from .ops import BY_KIND

    keys = list(model.model_fields)
    if model is LayerEntry and isinstance(node, dict) and node.get("op") in BY_KIND:
        keys += list(BY_KIND[node["op"]].model_fields)  # a layer's other keys are its op's attributes
    if model.__name__ == "LossDecl" and isinstance(node, dict) and node.get("op") in BY_KIND:
        keys += list(BY_KIND[node["op"]].model_fields)
    return keys


def apply_set(data: dict, text: str) -> None:
    """Apply one ``--set PATH=VALUE`` to the loaded spec data, in place (see the module docstring).

    A step is a key that exists, or one the spec language allows there (so ``train.lr`` works in a
    spec without ``train:``); in a list (``layers``) a step is an index or a layer's name; in a
    mapping of names (``inputs``, ``train.init``) a name may contain dots (``train.init.fc1.weight``).
    """
    from .spec import Spec

    path, value = parse_assignment(text)
    node, shape = data, ("model", Spec)
    i = 0
    while i < len(path):
        step = path[i]
        here = ".".join(path[:i]) or "the spec"
        if isinstance(node, list):
            index = _list_index(node, step)
            if index is None:
                names = [str(e["name"]) for e in node if isinstance(e, dict) and e.get("name") is not None]
                raise GraphcError(f"--set {text}: '{here}' has no entry '{step}'",
                                  hint=did_you_mean(step, names, "layer name") if names else f"use an index 0..{len(node) - 1}")
            key, item, used = index, shape[1] if shape[0] == "list" else ("leaf",), 1
        elif isinstance(node, dict):
            key, used = step, 1
            if shape[0] == "model":
                allowed = _allowed_keys(shape[1], node)
                if step not in node and step not in allowed:
                    raise GraphcError(f"--set {text}: '{'.'.join(path[:i + 1])}' is not a key of {here}",
                                      hint=did_you_mean(step, sorted(set(allowed) | {str(k) for k in node}), "key"))
                field = shape[1].model_fields.get(step)
                item = _shape(field.annotation) if field is not None else ("leaf",)
            elif shape[0] == "map":
                item = shape[1]
                key, used = _map_key(node, path[i:], item)
            elif step in node:
                item = ("leaf",)
            else:
                raise GraphcError(f"--set {text}: '{here}' has no key '{step}'", hint=did_you_mean(step, [str(k) for k in node], "key"))
        else:
            raise GraphcError(f"--set {text}: '{here}' is a value, not a mapping or list, so it has no '{step}'")
        i += used
        if i == len(path):
            node[key] = value
            if hasattr(node, "value_locs"):
                node.value_locs[key] = Loc(f"--set {text}", 1, len(".".join(path)) + 2)
            return
        if isinstance(node, dict) and node.get(key) is None:
            node[key] = [] if item[0] == "list" else {}
        node, shape = node[key], item


def _map_key(node: dict, rest: list[str], item) -> tuple[str, int]:
    """The entry of a mapping of names that a path's ``rest`` starts with, and how many steps it
    takes: the longest existing name; else a new name, up to a last step that is a field of the
    entry's model (``inputs.y.shape``: name ``y``; ``train.init.*.bias``: name ``*.bias``)."""
    for n in range(len(rest), 0, -1):
        if ".".join(rest[:n]) in node:
            return ".".join(rest[:n]), n
    if len(rest) >= 2 and item[0] == "model" and rest[-1] in item[1].model_fields:
        return ".".join(rest[:-1]), len(rest) - 1
    return ".".join(rest), len(rest)


def _list_index(items: list, step: str) -> int | None:
    if step.lstrip("-").isdigit():
        i = int(step)
        return i if -len(items) <= i < len(items) else None
    for i, e in enumerate(items):
        if isinstance(e, dict) and e.get("name") == step:
            return i
    return None


# --- loading a spec for training -----------------------------------------------------------------

def load_for_training(path: str | Path, sets: list[str] = (), overfit: bool = False):
    """The compiled forward graph, the ``train:`` settings and the effective spec data (after the
    ``--set`` overrides and the ``train.l2`` override of ``loss.l2``; no L2 at all when ``overfit``,
    as the course advises for that check), plus the blocks used."""
    from .build import build_graph
    from .load import LoadedSpec, _collect_blocks, _layers_are_sound, _validate
    from .spec import Spec
    from .yamlsafe import load_yaml_file

    path = str(path)
    data = load_yaml_file(path)
    if not isinstance(data, dict):
        raise GraphcError("the spec must be a mapping", Loc(path, 1, 1))
    for text in sets:
        apply_set(data, text)
    errors: list[Diagnostic] = []
    spec = _validate(data, Spec, "spec", errors)
    if spec is None and not _layers_are_sound(data):
        raise GraphcError(errors)
    blocks: dict = {}
    _collect_blocks(data, Path(path).parent, blocks, {}, errors, (str(Path(path).resolve()),))
    if spec is None or errors:
        raise GraphcError(errors)
    train = spec.train or TrainDecl()
    if spec.loss is None:
        raise GraphcError("the spec has no loss, so there is nothing to train", Loc(path, 1, 1),
                          "add a 'loss:' section, e.g. {op: softmax_cross_entropy, inputs: [logits, label]}")
    if train.l2 is not None or overfit:
        data["loss"]["l2"] = 0.0 if overfit else train.l2
    graph = build_graph(LoadedSpec(path, data, spec, blocks, []))
    return graph, train, data, blocks


def canonical(data) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def spec_hash(data, blocks, extra: dict | None = None) -> str:
    """SHA-256 of the effective spec (after overrides), the blocks it uses and ``extra`` settings."""
    return hashlib.sha256(canonical({"spec": data, "blocks": blocks, "extra": extra or {}}).encode()).hexdigest()


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
    from .engines import loss_parts

    _, loss_op, _ = loss_parts(graph)
    inputs = [n for n, a in graph.nodes(data=True) if a["role"] == "input" and a["op"].kind == "input"]
    labels = [i for i in graph.nodes[loss_op]["inputs"] if i in inputs]
    data = [i for i in inputs if i not in labels]
    if len(labels) != 1 or len(data) != 1:
        raise GraphcError(f"graphc train needs one data input and one label input read by the loss; this spec has "
                          f"data inputs {data or '-'} and label inputs {labels or '-'}")
    return data[0], labels[0]


def _complete_spec_model() -> None:
    """``Spec.train`` names this module's :class:`TrainDecl` (spec.py imports this module last, to
    avoid an import cycle): resolve it now, so that every user of ``Spec`` (the JSON Schema's
    subclass too) sees a complete model, whichever of the two modules was imported first."""
    import sys

    from . import spec

    spec.Spec.model_rebuild(_types_namespace={"trainspec": sys.modules[__name__]})


_complete_spec_model()
