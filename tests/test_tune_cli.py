"""`graphc tune` conveniences through the real command: --backend onnxruntime for the trials, a
progress line while trials train (whole lines in a log, one line rewritten on a terminal), and
SIGTERM printing the --resume line."""

from __future__ import annotations

import json
import os
import pty
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "specs" / "mlp_digits.yaml"


def test_trials_train_on_the_requested_backend(tmp_path):
    out = tmp_path / "search"
    r = subprocess.run(["graphc", "tune", str(MLP), "--grid", "train.lr=0.005,0.01", "--set", "train.epochs=2",
                        "--workers", "1", "--backend", "onnxruntime", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    state = json.loads((out / "tune.json").read_text())
    assert state["backend"] == "onnxruntime" and [t["status"] for t in state["trials"]] == ["ok", "ok"]
    for t in state["trials"]:
        assert json.loads((out / t["run_dir"] / "metrics.json").read_text())["backend"] == "onnxruntime"
    assert "[1/2]" in r.stderr and "[2/2]" in r.stderr  # a line per finished trial


def test_sigterm_prints_the_resume_line(tmp_path):
    out = tmp_path / "search"
    proc = subprocess.Popen([sys.executable, "-m", "graphc.cli", "tune", str(MLP), "--grid", "train.lr=0.001,0.002",
                             "--set", "train.epochs=100000", "--workers", "1", "--out", str(out)],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stderr, selectors.EVENT_READ)
        seen, deadline = "", time.monotonic() + 300
        while "trials to train on" not in seen and time.monotonic() < deadline and proc.poll() is None:
            if sel.select(timeout=1):
                seen += proc.stderr.readline()
        assert "trials to train on" in seen, seen
        time.sleep(2)  # a trial is training
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, seen + err
    assert f"graphc tune: continue with: graphc tune --resume {out}" in err
    assert "Traceback" not in err
    state = json.loads((out / "tune.json").read_text())
    assert {t["status"] for t in state["trials"]} == {"pending"}


#: the progress line reads the trial's epochs every 50 ms, so that even a trial trained in a second on an
#: idle machine is seen while it trains (at the default 1 s, a 40-epoch trial can finish between two reads)
PROGRESS_EVERY = ("--progress-every", "0.05")


def _one_trial(tmp_path, **popen):
    out = tmp_path / "search"
    return subprocess.run(["graphc", "tune", str(MLP), "--grid", "train.lr=0.005", "--set", "train.epochs=40",
                           "--workers", "1", "--out", str(out), *PROGRESS_EVERY], text=True, timeout=600, cwd=tmp_path, **popen)


def test_a_progress_line_while_the_first_trial_trains_in_a_log(tmp_path):
    r = _one_trial(tmp_path, capture_output=True)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    first_result = next(i for i, line in enumerate(lines) if line.startswith("[1/1]"))
    progress = [line for line in lines[:first_result] if line.startswith("training ")]
    assert progress, r.stderr  # before the only trial finished
    for line in progress:
        assert re.fullmatch(r"training t000 epoch (\d+)/40( \(val [\d.]+%, ETA \d+s\))? \| 0/1 finished · [\d.]+s", line), line
    assert len(set(progress)) == len(progress)  # a log gets a line only when it changed
    assert "\r" not in r.stderr and "\033[K" not in r.stderr  # and no terminal rewrites


def test_on_a_terminal_the_progress_line_is_rewritten_in_place(tmp_path):
    main, child = pty.openpty()  # stderr is a terminal; stdout stays a pipe
    try:
        proc = subprocess.Popen(["graphc", "tune", str(MLP), "--grid", "train.lr=0.005", "--set", "train.epochs=40",
                                 "--workers", "1", "--out", str(tmp_path / "search"), *PROGRESS_EVERY],
                                stdout=subprocess.PIPE, stderr=child, cwd=tmp_path)
        os.close(child)
        err = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            err += chunk
        proc.wait(timeout=600)
    finally:
        os.close(main)
    text = err.decode()
    assert proc.returncode == 0, text
    before = text[: text.index("[1/1]")]
    assert re.search(r"\rtraining t000 epoch \d+/40", before), text
    assert before.endswith("\r\033[K")  # the progress line is cleared before the trial's line


def test_max_trial_memory_is_a_budget_in_max_memorys_units_and_max_memory_a_deprecated_alias(tmp_path):
    """tune's memory budget rejects candidates (as --max-params does); the other commands'
    --max-memory refuses a run. So it has its own name, and reads sizes as --max-memory does
    (kB = 1,000, KiB = 1,024); the old spelling still works, with its old units, and says so."""
    def reasons(*options):
        out = tmp_path / f"search{len(list(tmp_path.iterdir()))}"
        r = subprocess.run(["graphc", "tune", str(MLP), "--grid", "layers.fc1.units=50,100", *options, "--out", str(out)],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return r.stderr, [t["reason"] for t in json.loads((out / "tune.json").read_text())["trials"]]

    for size, limit in (("1kB", "1,000"), ("1KiB", "1,024")):
        err, why = reasons("--max-trial-memory", size)
        assert len(why) == 2 and all(f"exceed --max-trial-memory {limit} (largest layer: dense 'fc1'" in w for w in why), why
        assert "deprecated" not in err
    err, why = reasons("--max-memory", "1kB")
    assert "graphc: warning: --max-memory is deprecated, use --max-trial-memory (--max-memory is the run limit of" in err
    assert all("exceed --max-trial-memory 1,024 " in w for w in why), why  # its former binary kB
    r = subprocess.run(["graphc", "tune", str(MLP), "--max-trial-memory", "lots"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "expected a size such as 4GiB, 512MiB or 8GB" in r.stderr
