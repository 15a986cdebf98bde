"""Run directories (README, "Safety"): a spec's name cannot place a run outside runs/, one process per
run directory (a lock file holding its pid), and a damaged run.json is a located error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "specs" / "mlp_digits.yaml"
QUICK = ["--set", "train.epochs=1", "--set", "train.split.val=0.1"]


def graphc(*args, cwd=None, timeout=300):
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("name,expected", [("../../escaped", "escaped"), ("/abs/olute", "abs_olute"),
                                           ("a\x1b[2Jb", "a_[2Jb"), ("..", "run")])
def test_a_spec_name_is_one_safe_path_component_under_runs(tmp_path, name, expected):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    spec = work / "s.yaml"
    spec.write_text(MLP.read_text().replace("name: mlp_digits", f"name: {json.dumps(name)}", 1))
    assert json.dumps(name) in spec.read_text()
    r = graphc("train", spec, *QUICK, cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "runs" / expected / "run.json").is_file()
    assert tree(tmp_path) == {"a", "a/b", "a/b/s.yaml", "a/b/runs", f"a/b/runs/{expected}"} | {
        f"a/b/runs/{expected}/{p}" for p in tree(work / "runs" / expected)}
    assert not (work / "runs" / expected / ".lock").exists(), "the lock is released at the end"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    r = graphc("train", MLP, "--out", out, *QUICK)
    assert r.returncode == 0, r.stderr
    return out


def test_a_second_process_on_a_run_directory_is_refused_with_the_first_ones_pid(finished_run):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (finished_run / ".lock").write_text(f"{holder.pid}\n")
        before = {p: p.read_bytes() for p in finished_run.rglob("*") if p.is_file()}
        r = graphc("train", "--resume", finished_run)
        assert r.returncode == 73, r.stderr
        assert f"run directory {finished_run} is in use by process {holder.pid}" in r.stderr and "Traceback" not in r.stderr
        assert {p: p.read_bytes() for p in finished_run.rglob("*") if p.is_file()} == before
    finally:
        holder.kill()
        holder.wait()
        (finished_run / ".lock").unlink(missing_ok=True)


def test_a_stale_lock_is_reclaimed_and_said_so(finished_run):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (finished_run / ".lock").write_text(f"{dead.pid}\n")
    r = graphc("train", "--resume", finished_run)
    assert r.returncode == 0, r.stderr
    assert f"reclaiming the stale lock {finished_run / '.lock'} of process {dead.pid}, which is no longer running" in r.stderr
    assert not (finished_run / ".lock").exists()


def test_an_existing_file_as_run_directory_is_73(tmp_path):
    (tmp_path / "r").write_text("not a directory")
    r = graphc("train", MLP, "--out", tmp_path / "r", *QUICK)
    assert r.returncode == 73 and "cannot create run directory" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert (tmp_path / "r").read_text() == "not a directory" and tree(tmp_path) == {"r"}


@pytest.mark.parametrize("content,message", [
    ("[1, 2]", "run.json holds a list, expected an object"),
    ('{"spec": 42}', "field 'spec' is a number (42), expected the spec's path"),
    ('{"spec": "s.yaml", "sets": "train.lr=1"}', "field 'sets' is a string"),
    ('{"spec": "s.yaml", "overfit": "x"}', "field 'overfit' is a string"),
    ('{"sets": []}', "run.json has no 'spec' field"),
    ("not json", "cannot read run.json"),
])
def test_a_damaged_run_json_is_a_located_error(tmp_path, content, message):
    run = tmp_path / "r"
    run.mkdir()
    (run / "run.json").write_text(content)
    r = graphc("train", "--resume", run)
    assert r.returncode == 65, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and "TypeError" not in r.stderr, r.stderr
    assert str(run) in r.stderr
    assert tree(tmp_path) == {"r", "r/run.json"}, "the lock is gone, nothing written"


@pytest.mark.parametrize("content,message", [("[1, 2]", "tune.json: holds list, expected an object"),
                                             ('{"spec": 5}', "field 'spec' is int 5, expected the spec's path")])
def test_a_damaged_tune_json_is_a_located_error(tmp_path, content, message):
    (tmp_path / "tune.json").write_text(content)
    r = graphc("tune", "--resume", tmp_path)
    assert r.returncode == 65 and message in r.stderr and "internal error" not in r.stderr, r.stderr
    assert tree(tmp_path) == {"tune.json"}
