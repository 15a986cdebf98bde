"""Broken specs run through the real ``graphc compile`` command.

Every ``tests/bad_specs/*.yaml`` (except ``lib_*.yaml``, files that only exist to be included) states
what ``graphc`` must report in its first comment lines::

    # expect: 7:13: unknown op 'rleu' — did you mean 'relu'?
    # expect: lib_other.yaml:2:11: include cycle: …     (a diagnostic located in another file)
    # expect-not: does not reach any output              (a follow-on error that must not appear)

For each file the command must exit 65 (invalid spec), print nothing on stdout, write no ``-o`` file,
show no traceback, and print, for every ``expect`` line, a line
``<file as passed>:<line>:<col>: error: <text containing the message>`` on stderr; all of them in one
run. The commands run in parallel once per module; each spec is then one test.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BAD = Path(__file__).resolve().parent / "bad_specs"
SPECS = sorted(p for p in BAD.glob("*.yaml") if not p.name.startswith("lib_"))
TIMEOUT = 120  # seconds; a hang is a failure, not a stuck test run (generous: CI machines are shared)

EXPECT = re.compile(r"^# expect: (?:(?P<file>[\w.\-]+\.yaml):)?(?P<line>\d+):(?P<col>\d+): (?P<message>.+?)\s*$")
EXPECT_NOT = re.compile(r"^# expect-not: (?P<text>.+?)\s*$")
PY_WARNING = re.compile(r"\b\w*Warning: ")  # UserWarning, DeprecationWarning, … (not graphc's "warning:")
DIAG = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<severity>error|warning): (?P<text>.*)$")


@dataclass
class Expect:
    file: str | None  # None: the spec itself
    line: int
    col: int
    message: str


def expectations(path: Path) -> tuple[list[Expect], list[str]]:
    """The ``# expect:`` / ``# expect-not:`` lines at the top of a spec (read as bytes: some are not UTF-8)."""
    wanted, unwanted = [], []
    for raw in path.read_bytes().split(b"\n"):
        line = raw.decode("utf-8", errors="replace")
        if not line.startswith("# expect"):
            break
        if m := EXPECT.match(line):
            wanted.append(Expect(m["file"], int(m["line"]), int(m["col"]), m["message"]))
        elif m := EXPECT_NOT.match(line):
            unwanted.append(m["text"])
        else:
            raise AssertionError(f"{path.name}: malformed expectation line: {line!r}")
    return wanted, unwanted


@dataclass
class Run:
    shown: str  # the spec path as passed on the command line
    proc: subprocess.CompletedProcess
    out: Path


def run_graphc(spec: str, out: Path, *extra: str) -> Run:
    proc = subprocess.run(["graphc", "compile", spec, "-o", str(out), *extra], capture_output=True, text=True,
                          cwd=ROOT, timeout=TIMEOUT)
    return Run(spec, proc, out)


def shown(path: Path) -> str:
    """How a spec is passed: relative to the repository root, where the commands run."""
    return str(path.relative_to(ROOT))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    outdir = tmp_path_factory.mktemp("bad_specs_out")
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {p.name: pool.submit(run_graphc, shown(p), outdir / f"{p.stem}.out") for p in SPECS}
        return {name: f.result() for name, f in futures.items()}


def check_rejected(run: Run, code: int = 65) -> list[tuple[str, int, int, str, str]]:
    """Assertions every rejected spec shares; returns the parsed stderr diagnostics."""
    err = run.proc.stderr
    assert "Traceback" not in err, f"graphc crashed:\n{err}"
    assert not PY_WARNING.search(err), f"a Python warning leaked to the user:\n{err}"
    assert run.proc.returncode == code, f"exit code {run.proc.returncode}, expected {code}\nstderr:\n{err}"
    assert run.proc.stdout == "", f"stdout should be empty, got:\n{run.proc.stdout}"
    assert not run.out.exists(), "the -o output file was written for an invalid spec"
    diags = []
    for line in err.splitlines():
        if m := DIAG.match(line):
            diags.append((m["file"], int(m["line"]), int(m["col"]), m["severity"], m["text"]))
    return diags


def same_file(printed: str, name: str) -> bool:
    """Whether a path graphc printed (relative to where it ran, or absolute) is ``bad_specs/<name>``."""
    return (ROOT / printed).resolve() == (BAD / name).resolve()


def assert_diagnostics(run: Run, wanted: list[Expect], unwanted: list[str]) -> None:
    diags = check_rejected(run)
    err = run.proc.stderr
    missing = []
    for e in wanted:
        def matches(d):
            file, line, col, severity, text = d
            where = file == run.shown if e.file is None else same_file(file, e.file)
            return where and (line, col) == (e.line, e.col) and severity == "error" and e.message in text
        if not any(matches(d) for d in diags):
            where = run.shown if e.file is None else f"…/{e.file}"
            missing.append(f"{where}:{e.line}:{e.col}: error: …{e.message}…")
    assert not missing, "missing from stderr:\n  " + "\n  ".join(missing) + f"\nstderr was:\n{err}"
    present = [t for t in unwanted if t in err]
    assert not present, f"stderr should not contain {present} (follow-on noise or a wrong claim)\nstderr was:\n{err}"


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_bad_spec(spec: Path, runs):
    wanted, unwanted = expectations(spec)
    assert wanted, f"{spec.name} has no '# expect:' lines"
    assert_diagnostics(runs[spec.name], wanted, unwanted)


def test_corpus_is_large_enough():
    assert len(SPECS) >= 40


def test_python_tag_executes_nothing(runs):
    assert "tag_python_object.yaml" in runs
    assert not (ROOT / "graphc_was_pwned").exists(), "a !!python tag was executed"


def test_billion_laughs_is_bounded(tmp_path):
    # the bound is the located "expands to more than 200000 values" error (an unbounded expansion
    # would exhaust memory or hit TIMEOUT instead); how fast it comes is tools/' business, not a test's
    spec = BAD / "billion_laughs.yaml"
    run = run_graphc(shown(spec), tmp_path / "out.txt")
    assert_diagnostics(run, *expectations(spec))


def test_oversize_file(tmp_path):
    spec = tmp_path / "huge.yaml"
    body = "inputs:\n  x: {shape: [N, 8]}\nlayers:\n  - {op: relu}\n"
    spec.write_text(body + "# padding padding padding padding padding padding padding\n" * 80_000)  # ≈ 4.6 MB
    assert spec.stat().st_size > 4 * 1024 * 1024
    run = run_graphc(str(spec), tmp_path / "out.txt")
    assert_diagnostics(run, [Expect(None, 1, 1, "more than the limit of 4194304")], [])


def test_missing_spec_file(tmp_path):
    run = run_graphc(str(tmp_path / "nope.yaml"), tmp_path / "out.txt")
    check_rejected(run, code=66)  # EX_NOINPUT, not a bad spec
    assert "no such file" in run.proc.stderr


# --- a valid spec with a window that does not tile: a warning, an error under --strict -------------

NON_TILING = """\
name: illegal_stride
inputs:
  x: {shape: [N, 1, 7, 7]}
layers:
  - {name: c, op: conv2d, filters: 2, kernel: 3, stride: 3}
"""


@pytest.fixture
def non_tiling(tmp_path) -> Path:
    path = tmp_path / "stride.yaml"
    path.write_text(NON_TILING)
    return path


def test_non_tiling_window_warns(non_tiling, tmp_path):
    out = tmp_path / "report.txt"
    run = run_graphc(str(non_tiling), out)
    err = run.proc.stderr
    assert "Traceback" not in err
    assert not PY_WARNING.search(err), err
    assert run.proc.returncode == 0, err
    assert out.exists() and out.read_text().strip()
    assert run.proc.stdout == ""
    assert f"{non_tiling}:5:5: warning: " in err, err
    assert "do not tile" in err
    assert "error" not in err


def test_non_tiling_window_is_an_error_under_strict(non_tiling, tmp_path):
    run = run_graphc(str(non_tiling), tmp_path / "report.txt", "--strict")
    check_rejected(run)
    # the error keeps the warning's position: a user needs to know which layer to fix
    assert f"{non_tiling}:5:5: error: " in run.proc.stderr, run.proc.stderr
    assert "do not tile" in run.proc.stderr
