"""Exceptions for every user error, carrying all diagnostics of a run, and graphc's exit codes.

Exit codes (sysexits.h in spirit; documented in the README and ``graphc --help``):

====  ==========================================================================
0     success
2     the command line is invalid (argparse)
3     a numerical check failed (``check-grad`` above tolerance, a non-finite loss)
65    the spec or an input's data is invalid: ``GraphcError`` (``EX_DATAERR``)
66    an input file does not exist or cannot be read: ``MissingInput`` (``EX_NOINPUT``)
69    a program graphc needs is not available: no renderer for ``viz``'s format: ``Unavailable`` (``EX_UNAVAILABLE``)
70    internal error, a bug in graphc: the traceback goes to a crash log (``EX_SOFTWARE``)
73    an output cannot be created: ``CannotWrite`` (``EX_CANTCREAT``)
74    an I/O error while writing, such as a full disk: ``IOFailure`` (``EX_IOERR``)
130   interrupted (Ctrl-C or SIGTERM)
====  ==========================================================================
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CHECK_FAILED = 3
EXIT_DATA = 65
EXIT_NO_INPUT = 66
EXIT_UNAVAILABLE = 69
EXIT_INTERNAL = 70
EXIT_CANNOT_WRITE = 73
EXIT_IO = 74
EXIT_INTERRUPTED = 130
EXIT_SPEC_ERROR = EXIT_DATA  # the former name

#: The table above as one paragraph, for ``--help`` epilogs.
EXIT_CODES_HELP = ("exit codes: 0 success · 2 invalid command line · 3 a numerical check failed · "
                   "65 invalid spec or data (messages name file:line:col) · 66 an input file is missing or unreadable · "
                   "69 a program graphc needs is unavailable (viz's renderer: Graphviz dot or graphviz-pure) · "
                   "70 internal error (a bug: the traceback is in a crash log) · 73 an output cannot be created · "
                   "74 I/O error while writing (a full disk) · 130 interrupted")

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: object) -> str:
    """``text`` with control characters escaped (``\\x1b``, ``\\x07``, …), so that a user string echoed
    in a message (a layer name, an op, a path) cannot clear the screen or retitle the terminal. Tabs
    and newlines are kept: messages are ours, their line structure too."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                        str(text))


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
        return printable(f"{where}{self.severity}: {self.message}{hint}")


class GraphcError(Exception):
    """Every user error: a bad spec, a bad input file, a bad option value (exit :data:`EXIT_DATA`).

    Holds all diagnostics found in one run so that they are reported together. Subclasses differ
    only in their exit ``code``.
    """

    code = EXIT_DATA

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic | str, loc: Loc | None = None, hint: str | None = None):
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(diagnostics, loc, hint)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class MissingInput(GraphcError):
    """An input file (spec, ``--inputs``, ``--params``, a run directory) does not exist or cannot be read."""

    code = EXIT_NO_INPUT


class Unavailable(GraphcError):
    """A program graphc runs is not there: no renderer (Graphviz ``dot``, graphviz-pure) for the
    picture ``viz`` was asked for, or it cannot be started. The input was fine."""

    code = EXIT_UNAVAILABLE


class CannotWrite(GraphcError):
    """An output cannot be created: a missing or unwritable directory, a directory or read-only file
    in its place, an output that is one of the command's inputs."""

    code = EXIT_CANNOT_WRITE


class IOFailure(GraphcError):
    """Writing failed part-way (``ENOSPC``, ``EIO``…); the previous file, if any, is left intact."""

    code = EXIT_IO


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


# --- the command's outcome: every exception becomes one line and an exit code ----------------------

_WRITE_ERRNOS = {"ENOSPC", "EIO", "EDQUOT", "EFBIG", "EROFS"}


def crash_log(exc: BaseException) -> str:
    """Write ``exc``'s traceback to ``$XDG_STATE_HOME/graphc/crash-<time>-<pid>.log`` (falling back to
    ``~/.local/state/graphc/``, then the temporary directory); returns the path, or a reason if none
    of them can be written."""
    import errno
    import os
    import sys
    import tempfile
    import time
    import traceback

    text = (f"graphc crash at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\ncommand: {sys.argv!r}\n"
            f"python {sys.version.split()[0]}\n\n" + "".join(traceback.format_exception(exc)))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    state = os.environ.get("XDG_STATE_HOME")
    places = ([os.path.join(state, "graphc")] if state and os.path.isabs(state) else []) + \
        [os.path.join(os.path.expanduser("~"), ".local", "state", "graphc"), tempfile.gettempdir()]
    problem = "nowhere writable"
    for place in places:
        path = os.path.join(place, f"crash-{stamp}-{os.getpid()}.log")
        try:
            os.makedirs(place, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            return path
        except OSError as e:
            problem = f"no crash log: {place}: {e.strerror or errno.errorcode.get(e.errno, e)}"
    return problem


def _silence_stdout() -> None:
    """After a failed write to standard output, point it at /dev/null so that the interpreter's own
    flush at exit does not fail a second time (and print its own message)."""
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def run_guarded(command) -> int:
    """Run ``command()`` (which returns an exit code) and turn whatever it raises into one line on
    stderr and the exit code of the table above. No traceback reaches stderr unless ``GRAPHC_DEBUG=1``;
    an unexpected exception writes one to a crash log instead and exits :data:`EXIT_INTERNAL`."""
    import sys

    try:
        code = command()
        sys.stdout.flush()  # a full stdout shows here, while it can still be reported
        return code
    except (SystemExit, GeneratorExit):
        raise
    except BaseException as e:  # noqa: BLE001 — the one place every exception ends
        return outcome(e)


def outcome(e: BaseException) -> int:
    """The message (on stderr) and exit code of an exception that ended a command."""
    import errno
    import os
    import sys

    def say(line: str) -> None:
        try:
            print(line, file=sys.stderr)
        except OSError:
            pass

    if os.environ.get("GRAPHC_DEBUG") == "1":
        import traceback

        traceback.print_exception(e, file=sys.stderr)
    if isinstance(e, GraphcError):
        for d in e.diagnostics:
            say(f"graphc: {d}" if d.loc is None else str(d))
        return e.code
    if isinstance(e, KeyboardInterrupt):
        say("graphc: interrupted")
        return EXIT_INTERRUPTED
    if isinstance(e, BrokenPipeError):  # the reader went away (`graphc ops | head`): not an error
        _silence_stdout()
        return EXIT_OK
    if isinstance(e, OSError) and errno.errorcode.get(e.errno) in _WRITE_ERRNOS:
        where = f"'{printable(e.filename)}'" if e.filename else "standard output"
        _silence_stdout()
        say(f"graphc: error: cannot write {where}: {e.strerror}")
        return EXIT_IO
    return _internal(e, say)


def _internal(e: BaseException, say) -> int:
    log = crash_log(e)
    message = printable(" ".join(str(e).split()))[:500]
    say(f"graphc: internal error (please report): {type(e).__name__}: {message}; details in {log}")
    return EXIT_INTERNAL
