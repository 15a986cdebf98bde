"""graphc: a declarative neural-network graph compiler and executor."""

__version__ = "0.1.0"

from .errors import GraphcError  # noqa: E402


def compile_spec(path, text: str | None = None):
    """Load, validate, expand and build a spec: the forward IR (a ``networkx.DiGraph``)."""
    from .build import build_graph
    from .load import load_spec

    return build_graph(load_spec(path, text))


__all__ = ["GraphcError", "compile_spec", "__version__"]
