"""graphc as an ONNX backend (``onnx.backend.base.Backend``): a model is imported into a spec,
compiled, and run by graphc's NumPy interpreter.

This is what runs the ``onnx`` package's own conformance suite (``onnx.backend.test.BackendTest``)
against graphc (``tests/test_onnx_backend_suite.py``)::

    rep = GraphcBackend.prepare(onnx.load("model.onnx"))
    outputs = rep.run([x])          # one array per graph output, in the model's order

Inputs are given positionally, in the order of the graph's inputs that are not initializers (or as
a dict by name); float inputs run in their own precision (float64 stays float64), the rest as float32.

**Constants given at run time.** graphc's layers take their weights, shapes and axes as constants
(a ``conv2d`` owns its kernel, a ``reshape`` has its target in the spec), but a model may feed one
as a graph input whose value exists only when it runs: a Conv's weight, an LSTM's ``W``/``R``/``B``,
a BatchNormalization's scale, a Reshape's target shape, a Reduce's or Squeeze's axes, Clip's bounds,
Slice's starts and ends, Split's sizes, Pad's pads. The importer names, for each node it refuses,
the graph inputs that node asked for as constants (``Unsupported.constants``). When every refused
node has such inputs, ``prepare`` does not refuse the model: it has validated the rest (the inputs'
element types, every node not reading a refused one) and defers those inputs,
:attr:`GraphcRep.deferred`. ``run`` then checks each deferred input's value against the shape and
element type the graph declares for it, binds the values as initializers, imports and compiles the
model so bound, and interprets it with the other inputs. Where the bound import still wants graph
inputs as constants (a node behind a refused one, an LSTM asking for ``R`` once ``W`` is known),
those are bound too and join ``deferred``; a node that still cannot be taken is a ``GraphcError``
then, with its reason. The imported graph is cached by the bound values' bytes
(:data:`CACHED_BINDINGS` of them), so runs with the same weights import once. Only graph inputs
read directly by the refusing node are deferred (not values computed from them), and the first
operand of a node is its data, never deferred.
``graphc import`` has no run-time values: it reports such nodes as unsupported, all at once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
from onnx.backend.base import Backend, BackendRep

from ..errors import GraphcError
from . import import_model

#: imported graphs a prepared model keeps, one per distinct set of bound values (least recent dropped)
CACHED_BINDINGS = 4


class GraphcRep(BackendRep):
    """A prepared model: its compiled forward graph and parameters (or, when ``deferred`` is not
    empty, the model to import once those inputs' values are known), and the ONNX input/output order."""

    def __init__(self, model, source: str, input_order: list[str], output_order: list[str], deferred: tuple[str, ...] = (),
                 imported=None):
        self.model, self.source = model, source
        self.input_order, self.output_order = input_order, output_order
        self.deferred = deferred
        self.imported = imported
        self.graph = imported.graph() if imported is not None else None
        self._bound: OrderedDict[bytes, tuple] = OrderedDict()

    def bind(self, values: dict[str, np.ndarray]) -> tuple:
        """(imported model, compiled graph) with the deferred inputs bound to ``values`` (cached by their bytes).

        A node may ask for its constants one at a time (an LSTM's ``R`` once its ``W`` is known):
        while the import's only refusals are further graph inputs wanted as constants, those are
        bound too, and :attr:`deferred` grows to them (the model's structure decides the set)."""
        names = list(self.deferred)
        while True:
            arrays = {name: self._checked(name, values) for name in names}
            key = hashlib.sha256()
            for name, a in arrays.items():
                key.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
                key.update(np.ascontiguousarray(a).tobytes())
            digest = key.digest()
            if digest in self._bound:
                self._bound.move_to_end(digest)
                return self._bound[digest]
            imported = import_model(self._with_initializers(arrays), self.source, strict=False)
            more = [n for u in imported.unsupported for n in u.constants if n not in names]
            if imported.unsupported and more and all(u.constants for u in imported.unsupported):
                names += dict.fromkeys(more)
                continue
            if imported.unsupported:
                raise imported.error()
            self.deferred = tuple(names)
            self._bound[digest] = made = (imported, imported.graph())
            if len(self._bound) > CACHED_BINDINGS:
                self._bound.popitem(last=False)
            return made

    def _checked(self, name: str, values: dict) -> np.ndarray:
        """The value given for deferred input ``name``, of the element type and shape the graph declares."""
        from onnx import helper

        if name not in values:
            raise GraphcError(f"{self.source}: input '{name}' is not given (graphc takes it as a constant, bound at run time)")
        a = np.asarray(values[name])
        t = next(vi.type.tensor_type for vi in self.model.graph.input if vi.name == name)
        want = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] if t.HasField("shape") else None
        if a.dtype != want or dims is not None and (a.ndim != len(dims) or any(d not in (None, s) for d, s in zip(dims, a.shape))):
            shown = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]" if dims is not None else "of any shape"
            raise GraphcError(f"{self.source}: input '{name}' is given a {a.dtype} array of shape {list(a.shape)}; "
                              f"the model declares {want} {shown}")
        return a

    def _with_initializers(self, arrays: dict[str, np.ndarray]):
        """A copy of the model with ``arrays`` as initializers (they stay graph inputs, as IR 3 requires)."""
        from onnx import numpy_helper

        bound = type(self.model)()
        bound.CopyFrom(self.model)
        bound.graph.initializer.extend(numpy_helper.from_array(a, name) for name, a in arrays.items())
        return bound

    def run(self, inputs, **kwargs) -> tuple[np.ndarray, ...]:
        from ..backends.run import run_forward

        given = dict(inputs) if isinstance(inputs, dict) else dict(zip(self.input_order, inputs))
        imported, graph = (self.imported, self.graph) if not self.deferred else self.bind(given)
        arrays = {imported.inputs[k]: np.asarray(v) for k, v in given.items() if k not in self.deferred}
        floats = [a.dtype for a in arrays.values() if a.dtype.kind == "f"]
        dtype = np.float64 if floats and all(d == np.float64 for d in floats) else np.float32
        result = run_forward(graph, arrays, imported.params, dtype=dtype)
        return tuple(result[imported.outputs[name]] for name in self.output_order)


class GraphcBackend(Backend):
    """``prepare`` imports (every unsupported node is one ``GraphcError``) or defers the graph
    inputs taken as constants to ``run``, which binds them and interprets."""

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs) -> GraphcRep:
        super().prepare(model, device, **kwargs)  # onnx.checker
        source = model.graph.name or "model.onnx"
        imported = import_model(model, source, strict=False)
        initializers = {t.name for t in model.graph.initializer}
        inputs = [vi.name for vi in model.graph.input if vi.name not in initializers]
        outputs = [vi.name for vi in model.graph.output]
        if not imported.unsupported:
            return GraphcRep(model, source, inputs, outputs, imported=imported)
        if not all(u.constants for u in imported.unsupported):
            raise imported.error()
        deferred = tuple(dict.fromkeys(name for u in imported.unsupported for name in u.constants))
        return GraphcRep(model, source, inputs, outputs, deferred)

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"
