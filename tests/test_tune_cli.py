"""`graphc tune` conveniences through the real command: --backend onnxruntime for the trials, and
SIGTERM printing the --resume line."""

from __future__ import annotations

import json
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
