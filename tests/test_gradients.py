"""Generated from the registry (DESIGN.md §7): kernels against shape rules, VJPs against float64
central differences, and receptive-field rules against the support of an input gradient."""

from __future__ import annotations

import numpy as np
import pytest
from op_harness import concrete, one_op_graph, sample_values

from graphc.backends.interpreter import Program
from graphc.gradcheck import check_gradients
from graphc.ir.autodiff import differentiate
from graphc.ops import REGISTRY
from graphc.ops.base import Op

RUNNABLE = [(cls, i, s) for cls in REGISTRY for i, s in enumerate(cls.samples)]
IDS = [f"{c.kind}-{i}" for c, i, _ in RUNNABLE]


def has_vjp(cls) -> bool:
    return cls.composite or cls.vjp is not Op.vjp


@pytest.mark.parametrize("cls,index,s", RUNNABLE, ids=IDS)
def test_kernel_output_matches_shape_rule(cls, index, s):
    graph, out = one_op_graph(cls, s)
    values = sample_values(graph, dtype=np.float32, positive=s.positive)
    for dtype in (np.float32, np.float64):
        vals = {k: (v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in values.items()}
        y = Program(graph, [out]).run(vals)[out]
        want = graph.nodes[out]["type"]
        assert y.shape == concrete(want.shape)
        expected_dtype = np.dtype(dtype) if want.dtype.startswith("float") else np.dtype(want.dtype)
        assert y.dtype == expected_dtype, f"{cls.kind} computed {y.dtype} from {dtype.__name__} inputs"
        assert np.all(np.isfinite(y))


GRAD = [(c, i, s) for c, i, s in RUNNABLE if has_vjp(c)]


@pytest.mark.parametrize("cls,index,s", GRAD, ids=[f"{c.kind}-{i}" for c, i, _ in GRAD])
def test_vjp_matches_central_differences(cls, index, s):
    graph, out = one_op_graph(cls, s)
    values = sample_values(graph, seed=index + 1, positive=s.positive)
    wrt = [n for n, a in graph.nodes(data=True) if n != "r" and a["type"].dtype.startswith("float")
           and (a["role"] == "input" or (a["role"] == "param" and a["op"].trainable))]
    results = check_gradients(graph, "loss", values, wrt)
    assert results, "nothing was differentiated"
    loss = abs(float(Program(graph, ["loss"]).run(values)["loss"]))
    # central differences resolve about eps·|L|/h ≈ 2e-10·|L|: entries with tiny gradients are judged absolutely
    floor = 1e-8 * max(1.0, loss)
    for r in results:
        assert r.max_rel_error < 1e-6 or r.max_abs_error < floor, f"{r.name}: rel {r.max_rel_error:.2e} abs {r.max_abs_error:.2e}"


DENSE_WINDOWS = {"conv2d", "avgpool2d", "conv1d", "avgpool1d"}
def spatial(cls, s) -> bool:
    """Ops whose sample maps an NCHW (or NCL) input to an output of the same rank through a window rule."""
    if not s.inputs or s.inputs[0].rank not in (3, 4) or cls.composite or cls.is_loss:
        return False
    graph, out = one_op_graph(cls, s)
    xs = [graph.nodes[i]["type"] for i in graph.nodes[out]["inputs"]]
    return graph.nodes[out]["type"].rank == s.inputs[0].rank and cls.model_validate(s.attrs).window(xs) is not None


SPATIAL = [(c, i, s) for c, i, s in GRAD if spatial(c, s)]


@pytest.mark.parametrize("cls,index,s", SPATIAL, ids=[f"{c.kind}-{i}" for c, i, _ in SPATIAL])
def test_receptive_field_rule_is_the_gradient_support(cls, index, s):
    """The window rule predicts which input rows/cols (positions, in 1-D) one output unit depends on."""
    graph, out = one_op_graph(cls, s)
    y_type = graph.nodes[out]["type"]
    xs = [graph.nodes[i]["type"] for i in graph.nodes[out]["inputs"]]
    windows = cls.model_validate(s.attrs).window(xs)
    values = sample_values(graph, seed=3, positive=s.positive)
    training, grads = differentiate(graph, "loss", ["in0"])
    program = Program(training, [grads["in0"]])
    sizes, out_sizes = concrete(graph.nodes["in0"]["type"].shape)[2:], concrete(y_type.shape)[2:]
    assert len(windows) == len(sizes) == len(out_sizes)
    for point in {tuple(0 for _ in out_sizes), tuple(o // 2 for o in out_sizes), tuple(o - 1 for o in out_sizes)}:
        r = np.zeros(concrete(y_type.shape))
        r[(0, 0, *point)] = 1.0
        gx = np.abs(program.run({**values, "r": r})[grads["in0"]])
        for dim, (o, w, n) in enumerate(zip(point, windows, sizes)):
            got = np.nonzero(gx.sum(axis=tuple(a for a in range(gx.ndim) if a != dim + 2)))[0]
            start = int(np.floor(o * w.step)) + int(w.offset)
            predicted = set(range(max(start, 0), min(start + w.extent, n)))
            if w.step.denominator == 1:
                assert set(got) <= predicted, f"output {o}: support {list(got)} outside window {sorted(predicted)}"
                if cls.kind in DENSE_WINDOWS:  # every tap has a nonzero weight: the window's ends are read
                    dilated = s.attrs.get("dilation", 1) not in (1, [1, 1], (1, 1))
                    want = {min(predicted), max(predicted)} if dilated else predicted
                    assert want <= set(got), f"output {o}: support {list(got)} misses {sorted(want - set(got))}"
            else:  # fractional steps: the window is the widest over output phases
                assert len(got) <= w.extent
