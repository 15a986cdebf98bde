"""graphc as an ONNX backend (``onnx.backend.base.Backend``): a model is imported into a spec,
compiled, and run by graphc's NumPy interpreter.

This is what runs the ``onnx`` package's own conformance suite (``onnx.backend.test.BackendTest``)
against graphc (``tests/test_onnx_backend_suite.py``)::

    rep = GraphcBackend.prepare(onnx.load("model.onnx"))
    outputs = rep.run([x])          # one array per graph output, in the model's order

Inputs are given positionally, in the order of the graph's inputs that are not initializers;
float inputs run in their own precision (float64 stays float64), the rest as float32.
"""

from __future__ import annotations

import numpy as np
from onnx.backend.base import Backend, BackendRep

from . import import_model


class GraphcRep(BackendRep):
    """A prepared model: its compiled forward graph, its parameters, and the ONNX input/output order."""

    def __init__(self, imported, graph, input_order: list[str], output_order: list[str]):
        self.imported, self.graph = imported, graph
        self.input_order, self.output_order = input_order, output_order

    def run(self, inputs, **kwargs) -> tuple[np.ndarray, ...]:
        from ..backends.run import run_forward

        if isinstance(inputs, dict):
            arrays = {self.imported.inputs[k]: np.asarray(v) for k, v in inputs.items()}
        else:
            arrays = {self.imported.inputs[k]: np.asarray(v) for k, v in zip(self.input_order, inputs)}
        floats = [a.dtype for a in arrays.values() if a.dtype.kind == "f"]
        dtype = np.float64 if floats and all(d == np.float64 for d in floats) else np.float32
        result = run_forward(self.graph, arrays, self.imported.params, dtype=dtype)
        return tuple(result[self.imported.outputs[name]] for name in self.output_order)


class GraphcBackend(Backend):
    """``prepare`` imports (every unsupported node is one ``GraphcError``), ``run`` interprets."""

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs) -> GraphcRep:
        super().prepare(model, device, **kwargs)  # onnx.checker
        imported = import_model(model, model.graph.name or "model.onnx")
        initializers = {t.name for t in model.graph.initializer}
        inputs = [vi.name for vi in model.graph.input if vi.name not in initializers]
        outputs = [vi.name for vi in model.graph.output]
        return GraphcRep(imported, imported.graph(), inputs, outputs)

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"
