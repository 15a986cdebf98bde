"""Nothing lost: a run killed with SIGKILL (or stopped with Ctrl-C) mid-epoch and resumed ends with
exactly the parameters of an uninterrupted run; a damaged newest checkpoint falls back to the
previous one; a changed spec is refused; a non-finite loss stops the run with a good checkpoint kept."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from graphc.train import checkpoint
from graphc.train.loop import TIMING_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "specs" / "mlp_digits.yaml"
# long enough to be killed mid-epoch: 71 batches of 16 per epoch, a checkpoint every 5 steps
SETTINGS = ["--set", "train.epochs=10", "--set", "train.batch_size=16", "--checkpoint-every", "5"]
BATCHES = 71


def command(*args):
    return [sys.executable, "-m", "graphc.cli", *map(str, args)]


def graphc(*args, timeout=300):
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout)


def params_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def assert_same_params(a: Path, b: Path):
    pa, pb = params_of(a), params_of(b)
    assert sorted(pa) == sorted(pb)
    for k in pa:
        assert np.array_equal(pa[k], pb[k]), f"{k} differs"


def rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    r = graphc("train", MLP, "--out", out, *SETTINGS)
    assert r.returncode == 0, r.stderr
    return out


def start_and_wait_for_checkpoint(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen(command("train", MLP, "--out", out, *SETTINGS), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(int(p.name[5:13]) > 0 for p in checkpoint.listed(out)):
        assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    return proc


def test_sigkill_mid_epoch_then_resume_gives_the_same_final_parameters(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = start_and_wait_for_checkpoint(out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "final.npz").exists(), "killed before the end"
    newest = checkpoint.listed(out)[0]
    _, _, _, meta = checkpoint.read(newest)
    assert 0 < meta["batch"] < BATCHES, f"the checkpoint resumed from is mid-epoch: {meta['epoch']=}, {meta['batch']=}"
    r = graphc("train", "--resume", out)
    assert r.returncode == 0, r.stderr
    assert f"resuming {out} from {newest.name}" in r.stderr
    assert_same_params(out / "final.npz", uninterrupted / "final.npz")
    assert_same_params(out / "best.npz", uninterrupted / "best.npz")
    assert rows(out) == rows(uninterrupted)  # the metrics of every epoch, too
    assert len(rows(out)) == 10
    finished = json.loads((out / "metrics.json").read_text())
    assert finished["test_accuracy"] == json.loads((uninterrupted / "metrics.json").read_text())["test_accuracy"]
    again = graphc("train", "--resume", out)  # a finished run stays finished
    assert again.returncode == 0 and "stopped: completed" in again.stdout


def test_ctrl_c_writes_a_checkpoint_and_resume_continues_exactly(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = start_and_wait_for_checkpoint(out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted at epoch" in err and f"graphc train --resume {out}" in err
    r = graphc("train", "--resume", out)
    assert r.returncode == 0, r.stderr
    assert_same_params(out / "final.npz", uninterrupted / "final.npz")


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = start_and_wait_for_checkpoint(out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    # make sure there are two checkpoints, then damage the newest
    if len(checkpoint.listed(out)) < 2:
        r = subprocess.Popen(command("train", "--resume", out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while len(checkpoint.listed(out)) < 2 and r.poll() is None:
            time.sleep(0.005)
        r.kill()
        r.wait()
    newest, previous = checkpoint.listed(out)[:2]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = b"\0" * 64
    newest.write_bytes(bytes(data))
    r = graphc("train", "--resume", out)
    assert r.returncode == 0, r.stderr
    assert f"warning: checkpoint {newest.name} is unusable" in r.stderr
    assert f"falling back to {previous.name}" in r.stderr
    assert_same_params(out / "final.npz", uninterrupted / "final.npz")


def test_resuming_with_a_changed_spec_is_refused(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text(MLP.read_text())
    out = tmp_path / "run"
    r = graphc("train", spec, "--out", out, "--set", "train.epochs=1")
    assert r.returncode == 0, r.stderr
    before = {p.name: p.read_bytes() for p in checkpoint.listed(out)}
    spec.write_text(MLP.read_text().replace("units: 100", "units: 50").replace("lr: 0.005", "lr: 0.004"))
    r = graphc("train", "--resume", out)
    assert r.returncode == 65
    assert "the spec has changed since this run started (layers.0.units, train.lr)" in r.stderr
    assert "Traceback" not in r.stderr
    assert {p.name: p.read_bytes() for p in checkpoint.listed(out)} == before, "the run directory is left alone"
    spec.write_text(MLP.read_text())
    r = graphc("train", "--resume", out, "--set", "train.seed=3")  # a different override is a different spec too
    assert r.returncode == 65 and "train.seed" in r.stderr
    r = graphc("train", spec, "--out", out)
    assert r.returncode == 65 and "already holds a training run" in r.stderr


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    r = graphc("train", MLP, "--out", out, "--set", "train.lr=1e6", "--set", "train.optimizer=sgd", "--checkpoint-every", "2")
    assert r.returncode == 3, r.stderr
    assert "the loss is nan at epoch 1, batch" in r.stderr or "the loss is inf at epoch 1, batch" in r.stderr
    assert "(step " in r.stderr and "The last good checkpoint is kept" in r.stderr
    assert "RuntimeWarning" not in r.stderr and "Traceback" not in r.stderr
    kept = checkpoint.listed(out)
    assert kept, "a checkpoint remains"
    params, _, _, _ = checkpoint.read(kept[0])
    assert all(np.all(np.isfinite(v)) for v in params.values())
    assert str(kept[0]) in r.stderr
    assert json.loads((out / "metrics.json").read_text())["stopped"].startswith("non-finite")


def test_a_finished_run_continues_with_more_epochs_exactly_as_the_longer_run(tmp_path):
    """--resume RUN --set train.epochs=2 on a finished 1-epoch run ends with the parameters of a
    2-epoch run; the schedule's remaining part may change too; anything else is still refused."""
    short, full = tmp_path / "short", tmp_path / "full"
    for out, epochs in ((short, 1), (full, 2)):
        r = graphc("train", MLP, "--out", out, "--set", f"train.epochs={epochs}")
        assert r.returncode == 0, r.stderr
    r = graphc("train", "--resume", short, "--set", "train.epochs=2")
    assert r.returncode == 0, r.stderr
    assert "changed on resume: train.epochs; the run continues to epoch 2" in r.stderr
    assert_same_params(short / "final.npz", full / "final.npz")
    assert_same_params(short / "best.npz", full / "best.npz")
    assert rows(short) == rows(full)
    metrics = json.loads((short / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["stopped"] == "completed"
    info = json.loads((short / "run.json").read_text())
    assert info["sets"][-1] == "train.epochs=2" and info["continued"][0]["at_epoch"] == 1
    assert info["continued"][0]["changed"] == ["train.epochs"]
    assert json.loads((short / "spec.json").read_text())["train"]["epochs"] == 2
    # a plain --resume now compares with the continued settings: nothing to do, nothing refused
    r = graphc("train", "--resume", short)
    assert r.returncode == 0, r.stderr
    assert_same_params(short / "final.npz", full / "final.npz")
    # fewer epochs than already trained, or another learning rate, are refused with a clear message
    r = graphc("train", "--resume", short, "--set", "train.epochs=1")
    assert r.returncode == 65
    assert "train.epochs is 1, but the run has already trained 2 epochs" in r.stderr
    r = graphc("train", "--resume", short, "--set", "train.epochs=4", "--set", "train.lr=0.1")
    assert r.returncode == 65
    assert "the spec has changed since this run started (train.lr)" in r.stderr
    assert "only train.epochs and train.lr_decay may change on --resume" in r.stderr and "Traceback" not in r.stderr
    # a new schedule for the remaining epochs
    r = graphc("train", "--resume", short, "--set", "train.epochs=3", "--set", "train.lr_decay={kind: step, rate: 0.1, every: 1}")
    assert r.returncode == 0, r.stderr
    lrs = [float(row["lr"]) for row in rows(short)]
    assert lrs[:2] == pytest.approx([0.005, 0.005 * 0.95]) and lrs[2] == pytest.approx(0.005 * 0.1 ** 2)


def test_fine_tuning_starts_from_trained_weights(tmp_path):
    base = tmp_path / "base"
    r = graphc("train", MLP, "--out", base, "--set", "train.epochs=1")
    assert r.returncode == 0, r.stderr
    for source, name in ((base, "best.npz"), (base / "final.npz", "final.npz")):
        out = tmp_path / f"tuned-{name}"
        r = graphc("train", MLP, "--params", source, "--out", out, "--set", "train.epochs=1", "--set", "train.lr=1e-4")
        assert r.returncode == 0, r.stderr
        assert f"starting from {base / name}: 4 of 4 parameters" in r.stderr
        step0 = [p for p in checkpoint.listed(out) if p.name == "ckpt-00000000.npz"]
        assert step0, "the step-0 checkpoint is kept (one epoch: two checkpoints)"
        started, _, _, _ = checkpoint.read(step0[0])
        trained = params_of(base / name)
        assert sorted(started) == sorted(trained)
        assert all(np.array_equal(started[k], trained[k]) for k in trained), "the run starts from the given weights"
        info = json.loads((out / "run.json").read_text())
        import hashlib

        assert info["init_params"]["path"] == str((base / name).resolve())
        assert info["init_params"]["sha256"] == hashlib.sha256((base / name).read_bytes()).hexdigest()
    # shapes that do not fit the spec: one line per parameter, nothing written
    r = graphc("train", MLP, "--params", base, "--out", tmp_path / "bad", "--set", "layers.fc1.units=32")
    assert r.returncode == 65
    assert f"--params {base}: 'fc1.weight' has shape (64, 100), the spec needs (64, 32)" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "bad").exists()
    r = graphc("train", "--resume", base, "--params", base)
    assert r.returncode == 65 and "--params starts a new run from trained weights" in r.stderr
