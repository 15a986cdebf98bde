"""One exception type for every user error, carrying all diagnostics of a run.

Exit codes (documented in the README and ``graphc --help``):

====  ==========================================================
0     success
1     the spec (or an input file) is invalid: ``GraphcError``
2     the command line is invalid (argparse)
3     a numerical check failed (for example ``check-grad`` above tolerance)
====  ==========================================================
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

EXIT_OK = 0
EXIT_SPEC_ERROR = 1
EXIT_USAGE = 2
EXIT_CHECK_FAILED = 3


@dataclass(frozen=True)
class Loc:
    """A position in a spec file; line and col are 1-based, as editors show them."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    message: str
    loc: Loc | None = None
    hint: str | None = None
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = f"{self.loc}: " if self.loc else ""
        hint = f" — {self.hint}" if self.hint else ""
        return f"{where}{self.severity}: {self.message}{hint}"


class GraphcError(Exception):
    """Every user error: a bad spec, a bad input file, a bad option value.

    Holds all diagnostics found in one run so that they are reported together.
    """

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic | str, loc: Loc | None = None, hint: str | None = None):
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(diagnostics, loc, hint)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class ShapeError(Exception):
    """Raised by an op's shape rule; the graph pass adds the node name and location."""


class NotDifferentiable(Exception):
    """Raised by an op's VJP rule when it has no gradient; differentiation names the node."""


def did_you_mean(word: str, choices, what: str = "") -> str | None:
    """A hint naming the closest valid choice, or listing a few when none is close."""
    choices = sorted(set(map(str, choices)))
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if not choices:
        return None
    shown = ", ".join(choices[:12]) + (", …" if len(choices) > 12 else "")
    return f"expected {what + ' ' if what else ''}one of: {shown}"
