"""The two engines a training run uses, compiled once: one whole training step (forward, loss,
backward and optimiser update as one graph) and the inference-mode evaluation (loss and the
prediction node) of the forward graph, on the NumPy interpreter or on onnxruntime."""

from __future__ import annotations

import networkx as nx
import numpy as np

from .interpreter import Program


def loss_parts(graph: nx.DiGraph) -> tuple[str, str, str]:
    """(loss node, the loss op's node, its prediction input) of a forward graph."""
    loss = graph.graph["loss"]
    candidates = [loss] + list(graph.nodes[loss]["inputs"])
    op_node = next(n for n in candidates if graph.nodes[n]["op"].is_loss and graph.nodes[n]["op"].kind != "l2_penalty")
    return loss, op_node, graph.nodes[op_node]["inputs"][0]


def accuracy_fn(kind: str):
    """Correct predictions per example for a loss kind, or None when accuracy means nothing (regression)."""
    if kind in ("softmax_cross_entropy", "hinge"):
        def correct(pred, y):
            # the classes are the last axis: (N, C) scores, or (N, T, C) per token of a sequence
            return pred.argmax(axis=-1) == (y if y.ndim == pred.ndim - 1 else y.argmax(axis=-1))
        return correct
    if kind == "sigmoid_cross_entropy":
        return lambda pred, y: (pred > 0) == (y > 0.5)
    return None


def choose_backend(backend: str | None, device: str) -> str:
    """The engine that can honour a device request: ``--device cuda`` needs onnxruntime (the NumPy
    interpreter runs on the CPU only), so it selects onnxruntime when no backend is named and is an
    error with ``--backend numpy``; ``auto`` and ``cpu`` keep the named backend (default numpy)."""
    from ..errors import GraphcError

    if device == "cuda":
        if backend == "numpy":
            raise GraphcError("--device cuda: the NumPy backend runs on the CPU only",
                              hint="use --backend onnxruntime (its CUDA execution provider) or --device cpu")
        return "onnxruntime"
    return backend or "numpy"


def engine_line(backend: str, provider: str, device: str) -> str:
    """The line that says which engine and provider a run chose, and for which --device."""
    return f"{backend}: {provider} (--device {device})"


class NumpyEngine:
    name = "numpy"

    def __init__(self, step_graph: nx.DiGraph, forward: nx.DiGraph, device: str = "auto"):
        self.updates = step_graph.graph["step"]
        self.loss = step_graph.graph["loss"]
        self.targets = list(self.updates)
        self.step_program = Program(step_graph, [self.loss] + [self.updates[k] for k in self.targets])
        loss, _, pred = loss_parts(forward)
        self.eval_outputs = (loss, pred)
        self.eval_program = Program(forward, [loss, pred])
        if device == "cuda":
            choose_backend("numpy", device)  # raises: never run on the CPU when a GPU was asked for
        self.provider = "NumPy interpreter"

    def step(self, feeds: dict) -> tuple[float, dict]:
        out = self.step_program.run(feeds)
        return float(out[self.loss]), {k: out[self.updates[k]] for k in self.targets}

    def evaluate(self, feeds: dict) -> tuple[float, np.ndarray]:
        out = self.eval_program.run(feeds)
        return float(out[self.eval_outputs[0]]), out[self.eval_outputs[1]]


class OrtEngine:
    name = "onnxruntime"

    def __init__(self, step_graph: nx.DiGraph, forward: nx.DiGraph, device: str = "auto"):
        from .onnx_export import export_model, training_model
        from .ort import session

        updates = step_graph.graph["step"]
        self.targets = list(updates)
        self.out_names = ["loss"] + [f"new/{k}" for k in self.targets]  # onnx_export.training_outputs
        self.step_session, self.provider = session(training_model(step_graph), device)
        self.step_inputs = [i.name for i in self.step_session.get_inputs()]
        loss, _, pred = loss_parts(forward)
        self.eval_session, _ = session(export_model(forward, [loss, pred]), device)
        self.eval_inputs = [i.name for i in self.eval_session.get_inputs()]
        self.eval_names = [loss, pred]

    def step(self, feeds: dict) -> tuple[float, dict]:
        out = self.step_session.run(self.out_names, {k: feeds[k] for k in self.step_inputs})
        return float(out[0]), dict(zip(self.targets, out[1:]))

    def evaluate(self, feeds: dict) -> tuple[float, np.ndarray]:
        loss, pred = self.eval_session.run(self.eval_names, {k: feeds[k] for k in self.eval_inputs})
        return float(loss), pred


ENGINES = {"numpy": NumpyEngine, "onnxruntime": OrtEngine}
