"""Exit codes (README, "Exit codes"): each class of failure has its own code, one line on stderr and
no traceback; an unexpected exception writes a crash log and exits 70."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "specs" / "mlp_digits.yaml"


def graphc(*args, env=None, cwd=None):
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its contents (None for directories)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def with_injected_bug(tmp_path: Path, exc: str, argv: list[str], env: dict):
    """Run the real ``graphc`` entry point with the compile report raising ``exc``: a stand-in for a bug
    (a crash cannot be produced through the CLI once every known one is fixed)."""
    code = ("import sys, graphc.report as r\n"
            f"def broken(*a, **k):\n    raise {exc}\n"
            "r.format_table = broken\n"
            "from graphc.cli import main\n"
            f"sys.exit(main({argv!r}))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)


@pytest.fixture
def state_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GRAPHC_DEBUG"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["HOME"] = str(tmp_path / "home")
    return env


def test_a_bad_spec_exits_65_and_a_missing_file_66(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninputs: {x: {shape: [N, 4]}}\nlayers:\n  - {name: a, op: rleu}\noutputs: [a]\n")
    before = snapshot(tmp_path)
    r = graphc("compile", bad, "-o", tmp_path / "out.txt")
    assert r.returncode == 65 and "unknown op 'rleu'" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = graphc("compile", tmp_path / "nope.yaml", "-o", tmp_path / "out.txt")
    assert r.returncode == 66 and r.stderr == f"graphc: error: no such file: {tmp_path / 'nope.yaml'}\n"
    r = graphc("run", MLP, "--inputs", tmp_path / "missing.npz", "--out", tmp_path / "o.npz")
    assert r.returncode == 66 and "--inputs: no such file" in r.stderr, r.stderr
    r = graphc("train", "--resume", tmp_path / "norun")
    assert r.returncode == 66 and "not a graphc run directory" in r.stderr, r.stderr
    assert snapshot(tmp_path) == before


def test_an_unexpected_exception_is_one_line_a_crash_log_and_70(tmp_path, state_env):
    spec = tmp_path / "s.yaml"
    spec.write_text(MLP.read_text())
    r = with_injected_bug(tmp_path, "ZeroDivisionError('division by zero\\x1b[2J')", ["compile", str(spec)], state_env)
    assert r.returncode == 70, r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    logs = sorted((tmp_path / "state" / "graphc").glob(f"crash-*-*.log"))
    assert len(logs) == 1
    assert r.stderr == (f"graphc: internal error (please report): ZeroDivisionError: division by zero\\x1b[2J; "
                        f"details in {logs[0]}\n")
    log = logs[0].read_text()
    assert "Traceback (most recent call last)" in log and "in broken" in log and "ZeroDivisionError" in log


def test_the_crash_log_falls_back_when_the_state_directory_cannot_be_made(tmp_path, state_env):
    (tmp_path / "state").write_text("a file where the state directory should be")
    r = with_injected_bug(tmp_path, "RuntimeError('boom')", ["compile", str(MLP)], state_env)
    logs = list((tmp_path / "home" / ".local" / "state" / "graphc").glob("crash-*.log"))
    assert r.returncode == 70 and len(logs) == 1 and f"details in {logs[0]}" in r.stderr, r.stderr


def test_graphc_debug_shows_the_traceback(tmp_path, state_env):
    r = with_injected_bug(tmp_path, "RuntimeError('boom')", ["compile", str(MLP)], {**state_env, "GRAPHC_DEBUG": "1"})
    assert r.returncode == 70 and "Traceback (most recent call last)" in r.stderr and "RuntimeError: boom" in r.stderr


def test_an_interrupt_exits_130(tmp_path, state_env):
    r = with_injected_bug(tmp_path, "KeyboardInterrupt", ["compile", str(MLP)], state_env)
    assert r.returncode == 130 and r.stderr == "graphc: interrupted\n" and not (tmp_path / "state").exists()


def test_a_full_standard_output_exits_74_in_one_line():
    with open("/dev/full", "w") as full:
        r = subprocess.run(["graphc", "compile", str(MLP)], stdout=full, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 74, r.stderr
    assert r.stderr == "graphc: error: cannot write standard output: No space left on device\n"


def test_a_closed_pipe_is_not_an_error():
    p = subprocess.Popen(["graphc", "ops"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 0 and err == "", err


def test_a_failed_gradient_check_still_exits_3(tmp_path):
    r = graphc("check-grad", MLP, "--tolerance", "0")
    assert r.returncode == 3 and "FAILED" in r.stdout, r.stdout + r.stderr


def test_help_documents_the_table():
    text = " ".join(graphc("--help").stdout.split())
    for code, meaning in [(65, "invalid spec or data"), (66, "an input file is missing"), (69, "a program graphc needs is unavailable"),
                          (70, "internal error"),
                          (73, "an output cannot be created"), (74, "I/O error"), (130, "interrupted"), (3, "a numerical check")]:
        assert f"{code} {meaning}" in text, (code, text)
    readme = (ROOT / "README.md").read_text()
    for code in (65, 66, 69, 70, 73, 74, 130):
        assert f"\n| {code} | " in readme


def test_messages_escape_control_characters(tmp_path):
    """A spec (or a file name) cannot clear the screen or retitle the terminal through a message."""
    spec = tmp_path / "s.yaml"
    spec.write_text('name: x\ninputs: {x: {shape: [N, 4]}}\nlayers:\n  - {name: a, op: "rl\\e]0;pwned\\a\\e[2Jeu"}\n'
                    'outputs: [a]\n')
    r = graphc("compile", spec)
    assert r.returncode == 65 and "unknown op 'rl\\x1b]0;pwned\\x07\\x1b[2Jeu'" in r.stderr, repr(r.stderr)
    r = graphc("compile", tmp_path / "x\x1b[2Jy.yaml")
    assert r.returncode == 66 and r.stderr == f"graphc: error: no such file: {tmp_path}/x\\x1b[2Jy.yaml\n", repr(r.stderr)
