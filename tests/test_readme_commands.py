"""Every ``graphc …`` command in the README's code blocks, as written.

Three kinds, each checked for what it is:

- a transcript (``$ graphc …`` followed by its output): run, and the output must be what the README shows;
- a concrete command (real paths, no placeholders; ``python examples/…`` scripts too): run, in
  README order, in a copy of the repository's ``specs/`` and
  ``examples/``, and it must exit 0 — unless it needs something the suite cannot give (a dask
  scheduler at ``HOST``), which ``NOT_RUN`` names with the reason;
- a synopsis (placeholders such as ``SPEC``, ``[--json]``, ``a|b``, ``…``): not runnable as such; its
  subcommand and every ``--option`` it names must be accepted by the real parser.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from graphc.cli import parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

#: Concrete commands the suite does not run, with why.
NOT_RUN = {
    "graphc tune specs/mlp_digits.yaml --random 'train.lr=loguniform(1e-4,1e-1)' --trials 32 --scheduler tcp://HOST:8786 --out /shared/tune-mlp":
        "needs a dask scheduler at HOST; its options are checked as a synopsis",
}


def _subcommands() -> dict[str, set[str]]:
    sub = next(a for a in parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()}


SUBCOMMANDS = _subcommands()


def readme_commands() -> list[tuple[str, str, str | None]]:
    """``(kind, command, expected output or None)`` for every graphc command in a code block."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", README, re.S):
        lines = block.replace("\\\n", " ").splitlines()
        for i, line in enumerate(lines):
            transcript = line.startswith("$ ")
            command = line[2:] if transcript else line
            command = re.sub(r"^pip install .*? && ", "", command.split("  #")[0]).strip()
            command = re.sub(r"\s+", " ", command)
            words = command.split(" ")
            if words[0] == "python" and len(words) > 1 and words[1].startswith("examples/"):
                found.append(("command", command, None))  # an example script, run after the commands above it
                continue
            if words[0] != "graphc" or len(words) < 2 or words[1].split("|")[0] not in SUBCOMMANDS:
                continue  # prose, another program, or graphc's own output ("graphc 0.1.0: …")
            if transcript:
                end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("$ ")), len(lines))
                found.append(("transcript", command, "\n".join(lines[i + 1:end]) + "\n"))
            elif re.search(r"\[|\||…|\{|\b[A-Z][A-Z_]+\b", command) and command not in NOT_RUN:
                found.append(("synopsis", command, None))
            else:
                found.append(("command", command, None))
    return found


COMMANDS = readme_commands()


def test_the_readme_has_commands_of_each_kind():
    kinds = {k for k, _, _ in COMMANDS}
    assert kinds == {"transcript", "command", "synopsis"}, COMMANDS
    assert ("command", "graphc compile specs/resnet18.yaml", None) in COMMANDS


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("readme")
    for folder in ("specs", "examples"):
        shutil.copytree(ROOT / folder, work / folder)
    return work


def _run(command: str, cwd: Path):
    words = shlex.split(command)
    if words[0] == "python":
        words[0] = sys.executable
    return subprocess.run(words, capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("kind,command,expected", [c for c in COMMANDS if c[0] != "synopsis"], ids=lambda v: v if isinstance(v, str) and v.startswith("graphc") else None)
def test_readme_command_runs_as_written(kind, command, expected, workdir):
    if command in NOT_RUN:
        words = shlex.split(command)
        options = {w.split("=")[0] for w in words if w.startswith("--")}
        assert options <= SUBCOMMANDS[words[1]], f"{command}: unknown options {options - SUBCOMMANDS[words[1]]}"
        return  # not run: NOT_RUN says why
    r = _run(command, workdir)
    if kind == "transcript":
        assert r.stdout + r.stderr == expected, f"{command}: the README shows other output"
    else:
        assert r.returncode == 0, f"{command}: exit {r.returncode}\n{r.stderr}"


@pytest.mark.parametrize("command", [c for k, c, _ in COMMANDS if k == "synopsis"])
def test_readme_synopsis_names_real_options(command):
    words = command.split(" ")
    for sub in words[1].split("|"):
        assert sub in SUBCOMMANDS, f"{command}: no subcommand {sub}"
        options = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command))
        assert options <= SUBCOMMANDS[sub], f"{command}: {sub} has no {options - SUBCOMMANDS[sub]}"
