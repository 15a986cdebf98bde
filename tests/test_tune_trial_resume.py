"""A tune trial stopped half way continues from its checkpoint instead of starting again."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from graphc.train import checkpoint
from graphc.tune.trials import run_trial

ROOT = Path(__file__).resolve().parent.parent
MLP = str(ROOT / "specs" / "mlp_digits.yaml")
SETS = ["train.epochs=3", "train.batch_size=16"]


def test_a_half_finished_trial_continues_from_its_checkpoint(tmp_path):
    run = tmp_path / "trial-0001"
    args = [sys.executable, "-m", "graphc.cli", "train", MLP, "--out", str(run), "--checkpoint-every", "5"]
    for s in SETS:
        args += ["--set", s]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any(int(p.name[5:13]) > 0 for p in checkpoint.listed(run)):
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)  # the worker dies mid-trial
    proc.wait(timeout=30)
    assert not (run / "metrics.json").exists()
    newest = checkpoint.listed(run)[0]

    result = run_trial(MLP, SETS, str(run), "0001")

    assert result["status"] == "ok", result
    assert result["epochs"] == 3
    log = (run / "train.log").read_text()
    assert f"resuming {run} from {newest.name}" in log, log
