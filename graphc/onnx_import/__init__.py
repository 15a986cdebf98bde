"""ONNX → spec: ``graphc import MODEL.onnx -o OUT.yaml``, and an ONNX file wherever a spec goes.

The stages, each a plain function: ``read`` (the file, bounded, external data confined to the
model's directory, opsets checked) → ``fold`` (constant subgraphs evaluated) → ``recurrent``
(ONNX's LSTM, GRU and RNN nodes with their wrappers as one node each) → ``patterns``
(multi-node idioms rewritten into one node each) → ``to_spec`` (node → layer, parameters in
graphc's layout). Every node graphc cannot take is reported at once.

Python::

    imported = import_model(onnx.load("resnet.onnx"), "resnet.onnx")
    imported.text            # the spec as YAML (what ``graphc import`` writes)
    imported.spec            # the same as plain data
    imported.params          # {"conv1.weight": array, …}, keyed by graphc's parameter names
    imported.inputs          # {ONNX input name: spec input name}; .outputs likewise
    graph = imported.graph() # the compiled forward graph, the model's parameters attached
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import Diagnostic, GraphcError
from ..ir.params import PARAM_VALUES
from ..version import __version__



@dataclass
class Unsupported:
    """A node graphc cannot take: its name, op type, domain opset and why (None: the op type).

    ``constants``: the graph inputs the node asked for as constants and did not get (a Conv's
    weight, a Reshape's target shape, a Reduce's axes fed as graph inputs, after its first, data,
    operand). Their values exist only at run time; :mod:`.backend` binds them then and imports again."""

    node: str
    op_type: str
    opset: int
    reason: str | None = None
    domain: str = ""
    constants: tuple[str, ...] = ()

    def message(self, source: str) -> str:
        domain = f"{self.domain} " if self.domain not in ("", "ai.onnx") else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{source}: node '{self.node}' ({self.op_type}, {domain}opset {self.opset}) is not supported by graphc{why}"


@dataclass
class ImportedModel:
    """An imported model: the spec (data and YAML text), its parameters, and how the ONNX inputs
    and outputs are named in it. ``spec``/``text`` are None when ``unsupported`` is not empty."""

    source: str
    spec: dict | None
    text: str | None
    params: dict[str, np.ndarray]
    inputs: dict[str, str]
    outputs: dict[str, str]
    unsupported: list[Unsupported] = field(default_factory=list)
    #: every ONNX value a layer computes → that layer's name (for comparing intermediate values)
    values: dict[str, str] = field(default_factory=dict)

    def error(self) -> GraphcError:
        """Every unsupported node, then a count by op type."""
        diags = [Diagnostic(u.message(self.source)) for u in self.unsupported]
        counts = Counter(u.op_type for u in self.unsupported)
        summary = ", ".join(f"{n} {op}" for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        diags.append(Diagnostic(f"{self.source}: {len(self.unsupported)} node(s) not supported by graphc ({summary})",
                                hint="'graphc ops' lists the ops graphc has"))
        return GraphcError(diags)

    def graph(self):
        """The compiled forward graph, carrying the model's parameters (``graph.graph['param_values']``)."""
        from ..ir.build import compile_spec

        if self.text is None:
            raise self.error()
        graph = compile_spec(self.source, self.text)
        check_params(graph, self.params)
        graph.graph[PARAM_VALUES] = self.params
        return graph


def check_params(graph, params: dict[str, np.ndarray]) -> None:
    """Every parameter of the compiled spec has its imported array, of its shape (else a bug)."""
    for name, a in graph.nodes(data=True):
        if a["role"] == "param":
            want = tuple(a["op"].shape)
            got = params.get(name)
            assert got is not None and got.shape == want, f"imported parameter {name}: {None if got is None else got.shape}, the spec needs {want}"


def _dims(value_info, index_hint: str) -> list:
    from .to_spec import _SAFE

    t = value_info.type.tensor_type
    dims = []
    for i, d in enumerate(t.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            sym = _SAFE.sub("_", d.dim_param).strip("_") if d.dim_param else ("N" if i == 0 else f"{index_hint}_d{i}")
            dims.append(sym if sym[:1].isalpha() or sym[:1] == "_" else f"d{sym}")
    return dims


DTYPES = {1: "float32", 11: "float64", 7: "int64"}


class _WatchedConstants(dict):
    """The folded constants, noting each graph input a converter asks for as one (``.get``, as
    ``Context.const`` and ``Uses.const`` do): what a refused node needed to be a constant."""

    def __init__(self, consts: dict, graph_inputs: set[str]):
        super().__init__(consts)
        self.graph_inputs, self.asked = graph_inputs, []

    def get(self, key, default=None):
        if key in self.graph_inputs and not dict.__contains__(self, key):
            self.asked.append(key)
        return super().get(key, default)


def import_model(model, source: str, strict: bool = True, params_file: str | None = None) -> ImportedModel:
    """The spec and parameters of ONNX ``model`` (read from ``source``, named in messages).

    ``strict``: raise a ``GraphcError`` listing every unsupported node (else return them in
    ``unsupported``). ``params_file``: the spec's ``params:`` entry (``graphc import`` writes the
    arrays there)."""
    from . import fold as folding
    from .patterns import rewrite
    from .recurrent import recurrent_layers
    from .to_spec import Context, Unsupported as NotTaken, sanitise, spec_text

    f = rewrite(recurrent_layers(folding.fold(model)))
    f.consts = watched = _WatchedConstants(f.consts, set(f.inputs))
    versions = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    ctx = Context(f)
    table = converters()
    spec_inputs, input_names = {}, {}
    by_name = {vi.name: vi for vi in model.graph.input}
    problems: list[Unsupported] = []
    for name in f.inputs:
        vi = by_name[name]
        ref = ctx.unique(sanitise(name))
        dtype = DTYPES.get(vi.type.tensor_type.elem_type)
        if dtype is None:
            problems.append(Unsupported(f"input {name}", "graph input", versions.get("ai.onnx", 0),
                                        f"element type {vi.type.tensor_type.elem_type} (graphc's inputs are float32, float64 or int64)"))
        decl = {"shape": _dims(vi, ref)}
        if dtype not in (None, "float32"):
            decl["dtype"] = dtype
        spec_inputs[ref] = decl
        ctx.ref[name] = input_names[name] = ref
    layers: list[dict] = []
    params: dict[str, np.ndarray] = {}
    poisoned: set[str] = set()
    previous = next(iter(spec_inputs), None)
    for node in f.nodes:
        domain = node.domain or "ai.onnx"
        opset = versions.get(domain, 0)
        convert = table.get(node.op_type) if domain == "ai.onnx" or node.op_type.startswith("graphc.") else None
        if convert is None:
            problems.append(Unsupported(node.label, node.op_type, opset, None, node.domain))
            poisoned.update(node.outputs)
            continue
        if any(i in poisoned for i in node.inputs):
            poisoned.update(node.outputs)
            continue
        watched.asked.clear()
        try:
            made = convert(node, ctx)
        except NotTaken as e:
            wanted = tuple(i for i in dict.fromkeys(watched.asked) if i in node.inputs[1:])
            problems.append(Unsupported(node.label, node.op_type, opset, str(e) or None, node.domain, wanted))
            poisoned.update(node.outputs)
            for layer in ctx.pending:  # the parameter layers made for it are not made after all
                ctx.ref = {k: v for k, v in ctx.ref.items() if v != layer.name}
            ctx.pending.clear()
            continue
        for layer in ctx.pending:  # parameters the node reads, just before it (a spec line with no inputs)
            layers.append({"name": layer.name, "op": layer.op, **layer.attrs})
            params.update({f"{layer.name}.{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in layer.params.items()})
            previous = layer.name
        ctx.pending.clear()
        if made[0].op == "alias":
            ctx.ref[node.outputs[0]] = made[0].inputs[0]
            continue
        base = sanitise(node.label, node.op_type)
        names = []
        for layer in made:
            layer.name = ctx.unique(base)
            inputs = [names[-1] if i is None else i for i in layer.inputs]
            entry = {"name": layer.name, "op": layer.op, **layer.attrs}
            if inputs != [previous]:
                entry["inputs"] = inputs
            layers.append(entry)
            params.update({f"{layer.name}.{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in layer.params.items()})
            names.append(layer.name)
            previous = layer.name
        if node.op_type == "Split":
            for out, name in zip(node.outputs, names):
                ctx.ref[out] = name
        else:
            ctx.ref[node.outputs[0]] = names[-1]
    outputs, output_names = {}, {}
    for name in f.outputs:
        if name in poisoned:
            continue
        if name not in ctx.ref or name in input_names:
            maker = next(((n, n.outputs.index(name)) for n in f.nodes if name in n.outputs), None)
            why = ("it is a constant or a graph input, not computed by a layer" if maker is None else
                   f"it is output {maker[1]} of node '{maker[0].label}' ({maker[0].op_type}), which graphc's layer does not compute")
            problems.append(Unsupported(f"output {name}", "graph output", versions.get("ai.onnx", 0), why))
            continue
        key = sanitise(name)
        while key in outputs:
            key += "_"
        outputs[key] = ctx.ref[name]
        output_names[name] = key
    if problems or not layers:
        if not problems:
            problems.append(Unsupported(model.graph.name or "graph", "graph", versions.get("ai.onnx", 0), "it computes nothing from its inputs"))
        result = ImportedModel(source, None, None, {}, input_names, output_names, problems)
        if strict:
            raise result.error()
        return result
    spec = {"name": model.graph.name or Path(source).stem, "inputs": spec_inputs}
    if params_file and params:
        spec["params"] = params_file
    spec["layers"] = layers
    spec["outputs"] = outputs
    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p) or "unknown producer"
    header = (f"imported by graphc {__version__} from {Path(source).name} ({producer}, opset {versions.get('ai.onnx', '?')}, "
              f"IR version {model.ir_version})")
    return ImportedModel(source, spec, spec_text(spec, header), params, input_names, output_names,
                         values={k: v for k, v in ctx.ref.items() if k not in input_names})


def converters() -> dict:
    """Every node type the importer converts, ``{op type: converter}``: :mod:`.to_spec`'s and
    :mod:`.recurrent`'s (which sits above ``to_spec`` and ``patterns``, using both)."""
    from .recurrent import CONVERTERS as RECURRENT
    from .to_spec import converters as node_converters

    return {**node_converters(), **RECURRENT}


def import_file(path, params_file: str | None = None) -> ImportedModel:
    """``import_model`` of the ONNX file ``path``, read with :func:`graphc.onnx_import.read.read_model`'s checks."""
    from .read import read_model

    return import_model(read_model(path), str(path), params_file=params_file)


def is_onnx_file(path) -> bool:
    """Whether ``path`` is meant as an ONNX model: named ``.onnx``, or starting like one."""
    from ..spec.sniff import sniff

    import os
    import stat

    if str(path).lower().endswith(".onnx"):
        return True
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False  # the spec loader refuses it by what it is (a FIFO is never opened)
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    found = sniff(head)
    return bool(found and found[0].startswith("an ONNX model"))


def load_source(path):
    """(the loaded spec, the imported parameters) of a spec file (parameters None) or an ONNX model
    (imported in memory: its spec text stands for the file)."""
    from ..spec.load import load_spec

    if is_onnx_file(path):
        imported = import_file(path)
        return load_spec(path, imported.text), imported.params
    return load_spec(path), None


def compile_source(path, partial: bool = False, sizes: dict[str, int] | None = None):
    """The forward graph of a spec or of an ONNX model, the model's parameters attached (as
    ``graph.graph['param_values']``, which :func:`graphc.ir.params.initial_params` starts from);
    ``sizes`` binds symbolic dims of its inputs (``compile --size``)."""
    from ..ir.build import build_graph

    loaded, params = load_source(path)
    graph = build_graph(loaded, partial=partial, sizes=sizes)
    if params is not None:
        check_params(graph, params)
        graph.graph[PARAM_VALUES] = params
    return graph
