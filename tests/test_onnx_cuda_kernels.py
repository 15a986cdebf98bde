"""No exported node falls back to the CPU on a GPU machine: every node of every graph graphc exports
(forward, evaluation, training step with every optimiser; every example spec and every op's
lowering) has a kernel in onnxruntime's CUDA provider for its op, its opset version and the types
of its inputs and outputs.

The CUDA provider's kernel table (``tests/data/ort_cuda_kernels.tsv``, source in
``tests/data/README.md``) lists per op and opset range the types each type constraint admits. A
node matches a row when the row's range contains the op's schema version at the model's opset
(``onnx.defs.get_schema(op, opset).since_version``) and every constraint the row lists admits the
type of each input and output bound to it (types from ONNX shape inference). Inputs of a fixed
type (a ``Reshape``'s int64 shape) have no constraint and need no lookup."""

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import defs, helper, shape_inference

from helpers import compile_example
from op_harness import one_op_graph
from graphc.backends.engines import loss_parts
from graphc.backends.onnx_export import OPSET, export_model, forward_model, training_model
from graphc.ir.autodiff import training_graph
from graphc.ir.passes import optimize
from graphc.ops import REGISTRY
from graphc.train.optimizers import OPTIMIZERS, with_optimizer

TABLE = Path(__file__).resolve().parent / "data" / "ort_cuda_kernels.tsv"
SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))


def read_table(path: Path = TABLE) -> dict[str, list[tuple[int, float, dict[str, set[str]]]]]:
    """op → [(first opset, last opset, {constraint: admitted types})]."""
    rows: dict[str, list] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            constraints = dict(part.split("=", 1) for part in row["types"].split(";") if part)
            last = int(row["opset_to"]) if row["opset_to"] else float("inf")
            rows.setdefault(row["op"], []).append((int(row["opset_from"]), last, {k: set(v.split(",")) for k, v in constraints.items()}))
    return rows


CUDA = read_table()


def type_names(model: onnx.ModelProto) -> dict[str, str]:
    """Every value's element type in the table's spelling (``float``, ``double``, ``int64``, ``bool``)."""
    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    return {name: onnx.TensorProto.DataType.Name(t).lower() for name, t in types.items()}


def missing_kernels(model: onnx.ModelProto, table=CUDA) -> list[str]:
    """One line per node without a matching CUDA kernel: op, schema version, types, where it came from."""
    types = type_names(model)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    found = []
    for node in model.graph.node:
        schema = defs.get_schema(node.op_type, opset)
        bound: dict[str, set[str]] = {}
        for formals, names in ((schema.inputs, node.input), (schema.outputs, node.output)):
            for i, name in enumerate(names):
                if name:  # a variadic parameter is the schema's last formal
                    bound.setdefault(formals[min(i, len(formals) - 1)].type_str, set()).add(types.get(name, "unknown"))
        rows = [c for first, last, c in table.get(node.op_type, []) if first <= schema.since_version <= last]
        if not any(all(ts <= admitted.get(k, ts) for k, ts in bound.items()) for admitted in rows):
            shown = ", ".join(f"{k}={'/'.join(sorted(ts))}" for k, ts in sorted(bound.items()))
            found.append(f"{node.op_type}-{schema.since_version} ({shown}) at {node.name}: {node.doc_string}")
    return found


def summary(found: list[str]) -> str:
    kinds = Counter(line.split(" at ")[0] for line in found)
    return "\n".join(f"{n}× {k}, e.g. {next(l for l in found if l.startswith(k))}" for k, n in kinds.most_common())


def test_the_table_is_the_cuda_one_and_the_lookup_refuses_what_it_lacks():
    assert len(CUDA) > 140 and {"Conv", "MatMul", "Gather", "BatchNormalization"} <= set(CUDA)
    x = helper.make_tensor_value_info("x", onnx.TensorProto.INT64, [2, 2])
    f = helper.make_tensor_value_info("f", onnx.TensorProto.FLOAT, [2, 2])

    def model(nodes, inputs, outputs, opset=OPSET):
        return helper.make_model(helper.make_graph(nodes, "m", inputs, outputs), opset_imports=[helper.make_opsetid("", opset)])

    int_matmul = model([helper.make_node("MatMul", ["x", "x"], ["y"], name="mm")], [x],
                       [helper.make_tensor_value_info("y", onnx.TensorProto.INT64, [2, 2])])
    assert [line.split(" at ")[0] for line in missing_kernels(int_matmul)] == ["MatMul-13 (T=int64)"]
    float_matmul = model([helper.make_node("MatMul", ["f", "f"], ["y"], name="mm")], [f],
                         [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 2])])
    assert missing_kernels(float_matmul) == []
    constant = model([helper.make_node("Constant", [], ["c"], name="c", value=helper.make_tensor("v", onnx.TensorProto.FLOAT, [], [1.0]))], [],
                     [helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [])])
    assert len(missing_kernels(constant)) == 1  # no provider registers Constant
    # Det has CUDA rows only for float: double falls back
    det = model([helper.make_node("Det", ["d"], ["y"], name="det")], [helper.make_tensor_value_info("d", onnx.TensorProto.DOUBLE, [2, 2])],
                [helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, [])])
    assert len(missing_kernels(det)) == 1
    # an opset range miss: Add-7 exists on CUDA, but not for int16 before opset 14
    short = helper.make_tensor_value_info("s", onnx.TensorProto.INT16, [2])
    add13 = model([helper.make_node("Add", ["s", "s"], ["y"], name="add")], [short], [helper.make_tensor_value_info("y", onnx.TensorProto.INT16, [2])], opset=13)
    assert [line.split(" at ")[0] for line in missing_kernels(add13)] == ["Add-13 (T=int16)"]


WHOLE_PRODUCT_UPDATES = ("sgd", "momentum", "nesterov")


def spec_models(path):
    """The graphs graphc exports for one spec: forward, evaluation (outputs and loss, as the
    onnxruntime training engine builds it), and the training step bare and with each optimiser (those
whose dense-weight updates can take the gradient product whole also without gradient outputs)."""
    graph = compile_example(path)
    yield "forward", forward_model(graph)
    if graph.graph.get("loss") is None:
        return
    loss, _, pred = loss_parts(graph)
    yield "evaluation", export_model(graph, [loss, pred])
    training, _ = optimize(training_graph(graph))
    yield "training step", training_model(training)
    for kind in OPTIMIZERS:
        yield f"training step with {kind}", training_model(with_optimizer(training, kind))
        if kind in WHOLE_PRODUCT_UPDATES:  # their dense-weight updates become Gemms without gradient outputs
            yield f"training step with {kind}, no gradient outputs", training_model(with_optimizer(training, kind, grads=False))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_node_of_every_spec_graph_has_a_cuda_kernel(path):
    kinds = []
    for kind, model in spec_models(path):
        found = missing_kernels(model)
        assert not found, f"{path.stem}, {kind}: nodes without a CUDA kernel:\n{summary(found)}"
        kinds.append(kind)
    assert kinds[0] == "forward" and (len(kinds) == 1 or len(kinds) == 3 + len(OPTIMIZERS) + len(WHOLE_PRODUCT_UPDATES))


CASES = [(cls, i, s) for cls in REGISTRY for i, s in enumerate(cls.samples)]


def test_every_op_lowering_and_its_gradient_have_cuda_kernels():
    """Each op's lowering on every registry sample, and the training step of its one-op graph
    (``loss = Σ op(x) ⊙ r``): ops no example spec uses are covered too."""
    problems = []
    for cls, index, s in CASES:
        graph, out = one_op_graph(cls, s)
        models = [("forward", export_model(graph, [out]))]
        if any(a["role"] == "param" or (a["role"] == "input" and a["type"].dtype.startswith("float"))
               for _, a in graph.nodes(data=True)):
            graph.graph["loss"] = "loss"
            training, _ = optimize(training_graph(graph))
            models.append(("training step", training_model(training)))
        for kind, model in models:
            problems += [f"{cls.kind}-{index} {kind}: {line}" for line in missing_kernels(model)]
    assert len(CASES) > 50
    assert not problems, "\n".join(problems)
