"""The onnx package's own conformance suite, ``onnx.backend.test.BackendTest``, run against graphc
(``graphc.onnx_import.backend.GraphcBackend``: import → compile → NumPy interpreter).

Included: every node, pytorch-converted, pytorch-operator and simple case whose op types are all
ones graphc imports, and the 9 real model-zoo networks under ``onnx/backend/test/data/light/``.
Excluded: only the cases listed in ``tests/data/onnx_backend_excluded.tsv``, each with the reason
graphc's importer gives for refusing it (an attribute or input form graphc has no layer for, such
as a 3-D window); ``test_exclusions_are_refusals`` checks that each excluded case really is refused
with exactly that reason, so the list cannot hide a case that would run. A case that feeds a weight,
shape or axes as a graph input runs: the backend binds its value at run time (``refusal`` binds the
case's first data set to find what the importer then says).
These cases are the outside definition of each op's forward semantics: a failure is graphc's bug.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from functools import cache
from pathlib import Path

import onnx
import onnx.backend.test
import pytest
from onnx.backend.test.loader import load_model_tests

import numpy as np
from onnx import numpy_helper

from graphc.errors import GraphcError
from graphc.onnx_import.backend import GraphcBackend
from graphc.onnx_import import converters

ROOT = Path(__file__).parent.parent
SUPPORTED = sorted(op for op in converters() if "." not in op)  # graphc.Dense is graphc's own export form
LIGHT = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
         "squeezenet", "vgg19", "zfnet512")
KINDS = ("node", "pytorch-converted", "pytorch-operator", "simple")

with open(Path(__file__).parent / "data" / "onnx_backend_excluded.tsv") as f:
    EXCLUDED = dict(row for row in csv.reader(f, delimiter="\t") if not row[0].startswith("#"))

# the light models' inputs are written under $ONNX_HOME by the runner: keep them out of the home directory
os.environ.setdefault("ONNX_HOME", tempfile.mkdtemp(prefix="graphc-onnx-home-"))


MARK = "is not supported by graphc"


def _model(case) -> onnx.ModelProto:
    return case.model if case.model is not None else onnx.load(os.path.join(case.model_dir, "model.onnx"))


@cache
def cases() -> dict[str, tuple[str, onnx.ModelProto, object]]:
    """Every case of the suite whose op types graphc imports: name → (kind, model, the case)."""
    out = {}
    for kind in KINDS:
        for case in load_model_tests(kind=kind):
            model = _model(case)
            if {n.op_type for n in model.graph.node} <= set(SUPPORTED):
                out[case.name] = (kind, model, case)
    return out


def first_inputs(name: str) -> dict[str, np.ndarray]:
    """The inputs of case ``name``'s first data set, by graph input name."""
    _, model, case = cases()[name]
    initializers = {t.name for t in model.graph.initializer}
    names = [vi.name for vi in model.graph.input if vi.name not in initializers]
    if case.data_sets:  # node cases carry theirs in memory
        arrays = [numpy_helper.to_array(a) if isinstance(a, onnx.TensorProto) else np.asarray(a) for a in case.data_sets[0][0]]
    else:
        data = Path(case.model_dir) / "test_data_set_0"
        arrays = [numpy_helper.to_array(onnx.load_tensor(str(data / f"input_{i}.pb"))) for i in range(len(names))]
    return dict(zip(names, arrays))


def refusal(name: str) -> str | None:
    """The reason graphc's importer refuses case ``name`` ("… is not supported by graphc: <reason>",
    "op type" when it names none), or None: ``prepare``, then, for the graph inputs it defers to
    run time, the import with the first data set's values bound."""
    _, model, _ = cases()[name]
    try:
        rep = GraphcBackend.prepare(model)
        if rep.deferred:
            rep.bind(first_inputs(name))
    except GraphcError as e:
        first = str(e).splitlines()[0]
        if MARK in first:
            return first.split(MARK, 1)[1].lstrip(": ") or "op type"
    return None


def included() -> list[str]:
    return sorted(set(cases()) - set(EXCLUDED)) + [f"test_{name}" for name in LIGHT]


backend_test = onnx.backend.test.BackendTest(GraphcBackend, __name__)
backend_test.include("^(" + "|".join(map(re.escape, included())) + ")_cpu$")
SUITE = backend_test.test_cases  # a property that builds new classes on every access: take them once
for case_name, case in SUITE.items():
    # the runner keeps every case it leaves out as a skip (about 3,800, CUDA ones too): drop those
    for attr in [a for a, f in vars(case).items() if getattr(f, "__unittest_skip__", False)]:
        delattr(case, attr)
    if "Real" in case_name:
        case.pytestmark = [pytest.mark.slow]  # the model-zoo networks: seconds each in NumPy
globals().update(SUITE)


def test_the_suite_runs_what_graphc_supports():
    """Nothing graphc imports is left out silently: each case is run or excluded with a reason."""
    node = [n for n, (kind, _, _) in cases().items() if kind == "node" and n not in EXCLUDED]
    assert len(node) > 100
    assert set(EXCLUDED) <= set(cases()), sorted(set(EXCLUDED) - set(cases()))


@pytest.mark.parametrize("name", sorted(EXCLUDED))
def test_exclusions_are_refusals(name):
    """An excluded case is refused by the importer with exactly the reason the list gives."""
    assert refusal(name) == EXCLUDED[name]


def test_readme_states_the_figures():
    run = {n: k for n, (k, _, _) in cases().items() if n not in EXCLUDED}
    node = sum(k == "node" for k in run.values())
    text = (ROOT / "README.md").read_text()
    assert f"{node} node tests" in text, node
    assert f"{len(run) - node} pytorch-converted, pytorch-operator and simple cases" in text, len(run) - node
    assert f"{len(SUPPORTED)} ONNX op types" in text, len(SUPPORTED)
    assert f"{len(EXCLUDED)} cases are excluded" in text, len(EXCLUDED)
