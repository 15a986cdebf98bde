"""The ``graphc`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from . import __version__
from .errors import EXIT_SPEC_ERROR, Diagnostic, GraphcError

EPILOG = """exit codes: 0 success · 1 invalid spec or input (messages name file:line:col) ·
2 invalid command line · 3 a numerical check failed"""


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place: never half-written."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _emit(text: str, out: str | None) -> None:
    if out:
        write_atomic(out, text + "\n")
    else:
        print(text)


def cmd_compile(args) -> int:
    from . import compile_spec
    from .report import compile_report, format_table

    from .analysis import warnings

    graph = compile_spec(args.spec)
    found = warnings(graph)
    if args.strict and found:
        raise GraphcError([Diagnostic(w.message, w.loc, "--strict turns warnings into errors") for w in found])
    report = compile_report(graph, expand=args.expand)
    for w in found:
        print(str(w) if w.loc else f"graphc: {w}", file=sys.stderr)
    _emit(json.dumps(report, indent=2) if args.json else format_table(report), args.output)
    return 0


def cmd_schema(args) -> int:
    from .schema import json_schema

    _emit(json.dumps(json_schema(), indent=2), args.output)
    return 0


def cmd_ops(args) -> int:
    from .ops import BY_KIND, LAYER_KINDS, LOSS_KINDS

    for title, kinds in (("layers", LAYER_KINDS), ("losses", LOSS_KINDS)):
        print(f"{title}:")
        for kind in kinds:
            cls = BY_KIND[kind]
            doc = (cls.__doc__ or "").strip().splitlines()[0]
            fields = ", ".join(cls.model_fields)
            print(f"  {kind:<22} {doc}" + (f"\n  {'':<22} attributes: {fields}" if fields else ""))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="graphc",
        description="graphc compiles neural-network architectures written as YAML: it validates a spec, "
                    "builds its graph and reports every shape, parameter count, cost and receptive field.",
        epilog=EPILOG,
    )
    p.add_argument("--version", action="version", version=f"graphc {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compile", help="validate a spec and print its per-layer report",
                       description="Validate SPEC, build its graph and print one row per layer: op, output shape, "
                                   "parameters, MACs, receptive field and inputs, then totals.", epilog=EPILOG)
    c.add_argument("spec", help="the spec file (YAML)")
    c.add_argument("--json", action="store_true", help="print the report as one JSON object (see README: 'compile --json')")
    c.add_argument("--expand", action="store_true", help="one row per layer inside block instances and repeats")
    c.add_argument("--strict", action="store_true", help="treat warnings (such as windows that do not tile) as errors")
    c.add_argument("-o", "--output", help="write the report to this file instead of standard output")
    c.set_defaults(run=cmd_compile)

    s = sub.add_parser("schema", help="print the JSON Schema of the spec language (for editors)")
    s.add_argument("-o", "--output", help="write the schema to this file")
    s.set_defaults(run=cmd_schema)

    o = sub.add_parser("ops", help="list the ops a spec can use, with their attributes")
    o.set_defaults(run=cmd_ops)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except GraphcError as e:
        for d in e.diagnostics:
            print(f"graphc: {d}" if d.loc is None else str(d), file=sys.stderr)
        return EXIT_SPEC_ERROR
    except KeyboardInterrupt:
        print("graphc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
