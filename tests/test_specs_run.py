"""Every example spec runs on the interpreter with the shapes inference promised, in both graphs,
and passes check-grad (symbolic gradients against float64 central differences within 1e-6), the large
ones reduced as ``helpers.REDUCED`` (and, for check-grad, ``helpers.CHECK_REDUCED``) says, with the
batch ``helpers.CHECK_BATCH`` gives and the directions :func:`directions` gives."""

from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import graphc
from helpers import CHECK_BATCH, compile_example
from graphc.backends.interpreter import Program
from graphc.backends.run import draw_masks
from graphc.gradcheck import check_spec, spec_values
from graphc.ir.autodiff import training_graph
from graphc.ir.passes import optimize

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))
SLOW = {"vgg16", "resnet18", "resnet50", "googlenet", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0"}


def marks(path):
    return [pytest.mark.slow] if path.stem in SLOW else []


PARAMS = [pytest.param(p, marks=marks(p), id=p.stem) for p in SPECS]


def concrete(shape, batch):
    return tuple(d if isinstance(d, int) else batch for d in shape)


@pytest.mark.parametrize("path", PARAMS)
def test_every_node_has_the_inferred_shape(path):
    graph = compile_example(path)
    training, _ = optimize(training_graph(graph))
    for g in (graph, training):
        values = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in spec_values(g, 2, 0).items()}
        values.update(draw_masks(g, {"N": 2}, 0))
        nodes = [n for n, a in g.nodes(data=True) if a["role"] not in ("input", "param")]
        result = Program(g, nodes).run(values)
        for n in nodes:
            want = g.nodes[n]["type"]
            assert result[n].shape == concrete(want.shape, 2), n
            assert result[n].dtype == np.dtype(want.dtype), n


@pytest.mark.parametrize("name", ["resnet20_cifar", "unet_small", "lenet5"])
def test_fused_steps_give_what_the_kernels_give_one_by_one(name):
    """The schedule runs a conv's input and weight gradients as one step (``Op.fused_forward``), and
    LeNet-5's max-pool gradients take the pools' outputs (``Op.reuse_forward``)."""
    training, _ = optimize(training_graph(graphc.compile_spec(SPECS[0].parent / f"{name}.yaml")))
    values = spec_values(training, 2, 0)
    values.update(draw_masks(training, {"N": 2}, 0))
    targets = list(training.graph["grads"].values())
    program = Program(training, targets)
    assert any(out.__class__ is tuple for _, _, out, _ in program.steps)
    pool_grads = [n for n in training if training.nodes[n]["op"].kind == "maxpool2d_grad"]
    reusing = [ins for _, ins, out, _ in program.steps if out.__class__ is int and out in {program.slot[n] for n in pool_grads}]
    assert len(reusing) == len(pool_grads) and all(len(ins) == 3 for ins in reusing)
    got = program.run(values)
    for n in nx.topological_sort(training):
        if n not in values:
            values[n] = training.nodes[n]["op"].forward(*[values[i] for i in training.nodes[n]["inputs"]])
    for t in targets:
        np.testing.assert_allclose(got[t], values[t], rtol=1e-12, atol=1e-14, err_msg=t)


def directions(path) -> int:
    """Random directions per tensor: one for the ``SLOW`` specs, check-grad's two for the others.

    Each tensor is checked on the ``support`` (16) entries of its largest symbolic gradient ``g``,
    along a random unit vector ``v`` there: ``⟨g, v⟩`` against central differences of the loss. A
    wrong VJP puts an error ``e`` on those entries and moves ``⟨g, v⟩`` by ``⟨e, v⟩``, which is zero
    only if ``e ⟂ v``, an event of probability zero for a Gaussian ``v``; a second direction guards
    only against a draw nearly orthogonal to ``e``, and on the big specs it doubles the loss
    evaluations, each of which re-runs the network downstream of the tensor (counted, two directions
    against one: MobileNetV2 1,117 against 547, EfficientNet-B0 1,025 against 499, ResNet-50 361
    against 183). Every trainable tensor is still
    checked, against the same 1e-6.
    """
    return 1 if path.stem in SLOW else 2


@pytest.mark.parametrize("path", PARAMS)
def test_check_grad_within_1e_6(path):
    graph = compile_example(path, check=True)
    results = check_spec(graph, batch=CHECK_BATCH.get(path.stem, 1), directions=directions(path))
    worst = max(results, key=lambda r: r.max_rel_error)
    assert worst.max_rel_error < 1e-6, f"{worst.name}: {worst.max_rel_error:.2e}"
    trainable = {n for n, a in graph.nodes(data=True) if a["role"] == "param" and a["op"].trainable}
    assert {r.name for r in results} == trainable
    assert all(r.checked == directions(path) for r in results if r.reaches_loss)
