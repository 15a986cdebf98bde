"""The layout's rules (README, "Layout"): no import circle between graphc's modules and no import of a
higher wing, counting every import statement, those inside functions included."""

import ast
from pathlib import Path

import networkx as nx
import pytest

import graphc

PACKAGE = Path(graphc.__file__).parent

#: the wings from the bottom up: a module imports modules of its own wing or of a lower layer only
LAYERS = (
    ("version", "errors", "gc_pause"),
    ("tensor", "files", "finite", "chart"),
    ("ops",),
    ("spec",),
    ("ir",),
    ("backends", "report", "viz_html"),
    ("onnx_import",),
    ("train", "gradcheck", "viz"),
    ("tune",),
    ("cli", "__init__"),
)
RANK = {wing: rank for rank, layer in enumerate(LAYERS) for wing in layer}


def package_sources(root: Path = PACKAGE) -> dict[str, str]:
    """Every module of the package by dotted name (``graphc.spec.load``; packages by their own name)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = ("graphc",) + path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path.read_text()
    return out


def import_graph(sources: dict[str, str]) -> nx.DiGraph:
    """Module → module edges of every ``import``/``from … import`` between the given modules."""
    graph = nx.DiGraph()
    graph.add_nodes_from(sources)
    packages = {name for name, text in sources.items() if any(other.startswith(name + ".") for other in sources)}
    for name, text in sources.items():
        here = name if name in packages else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in sources else base for a in node.names]
            else:
                continue
            for target in targets:
                if target in sources and target != name:
                    graph.add_edge(name, target, line=node.lineno)
    return graph


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def circles(graph: nx.DiGraph) -> list[list[str]]:
    return [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]


def upward_imports(graph: nx.DiGraph) -> list[str]:
    found = []
    for a, b, data in graph.edges(data=True):
        if wing(a) != wing(b) and RANK[wing(b)] >= RANK[wing(a)]:
            found.append(f"{a}:{data['line']} imports {b} ({wing(b)} is not below {wing(a)})")
    return sorted(found)


def test_every_wing_has_a_layer():
    assert {wing(m) for m in package_sources()} <= set(RANK)


def test_no_import_circles():
    assert circles(import_graph(package_sources())) == []


def test_no_upward_imports():
    assert upward_imports(import_graph(package_sources())) == []


def test_the_checks_see_function_level_imports():
    """The checks themselves: a lazy import inside a function makes a circle and an upward import."""
    sources = {
        "graphc": "",
        "graphc.ir": "",
        "graphc.ir.graph": "from ..ops.base import Op\n",
        "graphc.ops": "",
        "graphc.ops.base": "def infer():\n    from ..ir.graph import Builder\n",
        "graphc.spec": "",
        "graphc.spec.load": "def f():\n    import graphc.backends.run\n",
        "graphc.backends": "",
        "graphc.backends.run": "from graphc.ir import graph\n",
    }
    graph = import_graph(sources)
    assert circles(graph) == [["graphc.ir.graph", "graphc.ops.base"]]
    assert upward_imports(graph) == ["graphc.ops.base:2 imports graphc.ir.graph (ir is not below ops)",
                                     "graphc.spec.load:2 imports graphc.backends.run (backends is not below spec)"]


@pytest.mark.parametrize("name", ["compile_spec", "load_spec", "build_graph", "compile_report", "training_graph",
                                  "differentiate", "optimize", "initial_params", "Program", "run_forward",
                                  "run_training_step", "forward_model", "training_model", "save_model", "with_optimizer",
                                  "check_gradients", "json_schema"])
def test_public_api_from_the_top_level_package(name):
    assert callable(getattr(graphc, name)) and name in dir(graphc)


def test_onnx_dtypes_are_onnx_element_types():
    """The ops spell ONNX's element types out (so that they need not import onnx): they must be onnx's."""
    from onnx import TensorProto

    from graphc.ops.base import ONNX_DTYPES

    assert ONNX_DTYPES == {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE, "int64": TensorProto.INT64}
