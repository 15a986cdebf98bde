"""`graphc tune` (issue 7): search spaces, the static pre-filter, Dask execution on a real LocalCluster
with two worker processes (a killed worker, --resume), results, best.yaml, the plot and --refine."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from graphc.errors import GraphcError
from graphc.tune.prefilter import Budgets, parse_amount
from graphc.tune.search import TuneOptions, refine_space, tune
from graphc.tune.space import Dim, expand, parse_grid, parse_random

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "specs" / "mlp_digits.yaml"
CNN = ROOT / "specs" / "digits_cnn.yaml"
QUICK = ["train.epochs=5"]


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       silence_logs=logging.ERROR)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def state(out: Path) -> dict:
    return json.loads((out / "tune.json").read_text())


# --- the search space (no cluster) ------------------------------------------------------------------

def test_space_parsing_and_expansion():
    assert parse_grid("layers.fc1.units=50,100").args == [50, 100]
    assert parse_grid("train.optimizer=adam,sgd").args == ["adam", "sgd"]
    d = parse_random("train.lr=loguniform(1e-4,1e-1)")
    assert (d.kind, d.args) == ("loguniform", [1e-4, 1e-1])
    assert parse_random("layers.fc1.units=int(16,64)").args == [16, 64]
    assert parse_random("train.optimizer=choice(adam,momentum)").args == ["adam", "momentum"]
    with pytest.raises(GraphcError, match="loguniform"):
        parse_random("train.lr=logunifrom(1e-4,1e-1)")
    with pytest.raises(GraphcError, match="low > 0"):
        parse_random("train.lr=loguniform(0,1)")
    dims = [parse_grid("layers.fc1.units=50,100"), d, parse_random("layers.fc1.activation=choice(a,b)")]
    cands = expand(dims, trials=3, seed=1)
    assert len(cands) == 6 and [c["layers.fc1.units"] for c in cands] == [50, 50, 50, 100, 100, 100]
    assert all(1e-4 <= c["train.lr"] <= 1e-1 for c in cands)
    assert cands == expand(dims, trials=3, seed=1)  # reproducible from the seed
    assert parse_amount("2.5M") == 2_500_000 and parse_amount("64MB") == 64 * 2**20


def test_refine_narrows_around_the_best():
    dims = [Dim("train.lr", "loguniform", [1e-5, 1e-1]), Dim("layers.fc1.units", "int", [8, 512]),
            Dim("train.optimizer", "choice", ["adam", "sgd", "momentum"])]
    trials = [{"id": f"t{i}", "status": "ok", "val_accuracy": acc, "val_loss": 1 - acc,
               "values": {"train.lr": lr, "layers.fc1.units": u, "train.optimizer": o}}
              for i, (acc, lr, u, o) in enumerate([(0.9, 1e-3, 100, "adam"), (0.95, 3e-3, 120, "adam"),
                                                   (0.2, 1e-5, 8, "sgd"), (0.93, 2e-3, 90, "momentum")])]
    lr, units, opt = refine_space(dims, trials, top=3)
    assert 1e-5 < lr.args[0] < 1e-3 and 3e-3 < lr.args[1] < 1e-1 and lr.kind == "loguniform"
    assert lr.args[1] / lr.args[0] < 1e-1 / 1e-5 / 100  # at least two decades narrower
    assert 8 < units.args[0] <= 90 and 120 <= units.args[1] < 512
    assert opt.args == ["adam", "momentum"]


def test_a_path_the_spec_does_not_have_is_an_error(tmp_path):
    with pytest.raises(GraphcError, match="did you mean"):
        tune(TuneOptions(spec=str(MLP), grid=["train.lrr=1e-3,1e-2"], out=str(tmp_path / "t"), progress=False))


# --- on a LocalCluster of two worker processes ----------------------------------------------------

def test_search_over_lr_and_width_completes(client, tmp_path, capsys):
    out = tmp_path / "search"
    code = tune(TuneOptions(spec=str(MLP), grid=["layers.fc1.units=20,100"], random=["train.lr=loguniform(1e-3,3e-2)"],
                            trials=2, seed=0, sets=QUICK, out=str(out), client=client, progress=False))
    assert code == 0
    s = state(out)
    assert [t["status"] for t in s["trials"]] == ["ok"] * 4
    for t in s["trials"]:
        assert (out / "trials" / t["id"] / "metrics.json").is_file() and (out / "trials" / t["id"] / "best.npz").is_file()
        assert t["epochs"] == 5 and t["params"] == 64 * t["values"]["layers.fc1.units"] + t["values"]["layers.fc1.units"] \
            + t["values"]["layers.fc1.units"] * 10 + 10
    printed = capsys.readouterr().out
    assert "layers.fc1.units" in printed and "val acc" in printed and "best: t" in printed
    rows = json.loads((out / "results.json").read_text())
    accs = [r["val_accuracy"] for r in rows]
    assert accs == sorted(accs, reverse=True) and rows[0]["rank"] == 1
    csv_head = (out / "results.csv").read_text().splitlines()[0]
    for col in ("value:train.lr", "value:layers.fc1.units", "val_accuracy", "test_accuracy", "epochs", "wall_seconds",
                "params", "macs", "reason"):
        assert col in csv_head
    assert (out / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    rgb = np.round(matplotlib.image.imread(out / "tune.png")[..., :3] * 255)
    for color in ((0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28)):  # the trials' points, the best one's star: in both panels
        near = np.abs(rgb - color).max(axis=-1) < 40
        columns = np.nonzero(near.any(axis=0))[0]
        assert near.sum() > 50 and columns.min() < rgb.shape[1] // 2 < columns.max(), color
    # best.yaml is a complete spec that graphc train accepts
    from graphc.train.loop import Options, train

    best = (out / "best.yaml")
    assert str(rows[0]["value:train.lr"]) in best.read_text()
    assert train(Options(spec=str(best), out=str(tmp_path / "retrain"), sets=["train.epochs=1"], progress=False)) == 0


def test_impossible_shape_is_rejected_without_training(client, tmp_path):
    out = tmp_path / "cnn"
    code = tune(TuneOptions(spec=str(CNN), grid=["layers.conv1.kernel=3,11"], sets=["train.epochs=1"],
                            budgets=Budgets(max_params=10_000_000), out=str(out), client=client, progress=False))
    assert code == 0
    ok, bad = state(out)["trials"]
    assert ok["status"] == "ok" and (out / "trials" / ok["id"] / "metrics.json").is_file()
    assert bad["status"] == "rejected" and not (out / "trials" / bad["id"]).exists()  # never trained
    assert "layers.conv1.kernel=11" in bad["reason"] and "conv1" in bad["reason"] and "below 1" in bad["reason"]
    assert bad["layer"] == "conv1"
    rows = json.loads((out / "results.json").read_text())
    assert rows[-1]["status"] == "rejected" and "layers.conv1.kernel=11" in rows[-1]["reason"]


def test_budgets_reject_with_the_layer(tmp_path, client):
    out = tmp_path / "budget"
    tune(TuneOptions(spec=str(MLP), grid=["layers.fc1.units=10,400"], sets=["train.epochs=1"],
                     budgets=Budgets(max_params=5000), out=str(out), client=client, progress=False))
    small, big = state(out)["trials"]
    assert small["status"] == "ok"
    assert big["status"] == "rejected" and "--max-params" in big["reason"] and "'fc1'" in big["reason"]
    assert "layers.fc1.units=400" in big["reason"]


def test_a_killed_worker_does_not_stop_the_search(client, tmp_path):
    out = tmp_path / "killed"
    marker = tmp_path / "killed-once"
    code = tune(TuneOptions(spec=str(MLP), grid=["layers.fc1.units=16,24,32,40"], sets=QUICK, out=str(out), client=client,
                            crash_once={"t001": str(marker)}, progress=False))
    assert code == 0
    assert marker.is_file()  # the trial really killed its worker (SIGKILL) once
    trials = state(out)["trials"]
    assert all(t["status"] in ("ok", "failed") for t in trials)
    assert all(t["status"] == "ok" or t.get("reason") for t in trials)
    t1 = trials[1]
    assert t1["status"] == "ok", t1  # rescheduled on a live worker
    assert t1["worker_pid"] != int(marker.read_text().split()[1])
    assert len(client.scheduler_info()["workers"]) >= 1


def test_resume_skips_finished_trials(client, tmp_path):
    out = tmp_path / "resume"
    tune(TuneOptions(spec=str(MLP), grid=["layers.fc1.units=16,24,32"], sets=QUICK, out=str(out), client=client,
                     progress=False))
    s = state(out)
    # as if interrupted while t002 was training: its result is not in tune.json
    s["trials"][2] = {k: s["trials"][2][k] for k in ("id", "values", "sets", "params", "macs", "memory_bytes")} | {"status": "pending"}
    (out / "tune.json").write_text(json.dumps(s))
    stamps = {t["id"]: (out / "trials" / t["id"] / "metrics.json").stat().st_mtime_ns for t in s["trials"][:2]}
    assert tune(TuneOptions(resume=str(out), client=client, progress=False)) == 0
    after = state(out)["trials"]
    assert [t["status"] for t in after] == ["ok"] * 3
    for tid, stamp in stamps.items():
        assert (out / "trials" / tid / "metrics.json").stat().st_mtime_ns == stamp  # not re-run
    assert after[2]["val_accuracy"] is not None


def test_cli_grid_and_refine(tmp_path):
    from graphc.cli import main

    out = tmp_path / "coarse"
    assert main(["tune", str(MLP), "--random", "train.lr=loguniform(1e-4,1e-1)", "--trials", "4", "--seed", "3",
                 "--set", "train.epochs=3", "--workers", "2", "--out", str(out)]) == 0
    assert (out / "results.csv").is_file() and (out / "best.yaml").is_file()
    fine = tmp_path / "fine"
    assert main(["tune", "--refine", str(out), "--top", "2", "--trials", "2", "--workers", "2", "--out", str(fine)]) == 0
    s = state(fine)
    lo, hi = s["dims"][0]["args"]
    assert 1e-4 <= lo * 1.01 and hi <= 1e-1 * 1.01 and hi / lo < 1e3
    assert len(s["trials"]) == 2 and all(t["status"] == "ok" for t in s["trials"])


@pytest.mark.slow
def test_random_search_is_at_least_as_good_as_the_defaults(client, tmp_path):
    from graphc.tune.trials import run_trial

    default = run_trial(str(MLP), [], str(tmp_path / "default"), "default")
    out = tmp_path / "random16"
    tune(TuneOptions(spec=str(MLP), random=["train.lr=loguniform(1e-3,3e-2)", "train.l2=loguniform(1e-6,1e-3)",
                                            "layers.fc1.units=int(32,256)"],
                     trials=16, seed=0, out=str(out), client=client, progress=False))
    trials = state(out)["trials"]
    assert len(trials) == 16 and all(t["status"] == "ok" for t in trials)
    best = max(t["val_accuracy"] for t in trials)
    assert best >= default["val_accuracy"], (best, default)
    assert (out / "tune.png").is_file() and (out / "results.csv").is_file()


def test_a_specs_tune_section_is_its_search_space(tmp_path):
    """`tune:` in the spec itself (validated by the spec's schema) gives the space when --space is absent."""
    from graphc.tune.space import has_tune_section as _has_tune_section
    from graphc.tune.space import space_from_file

    spec = tmp_path / "s.yaml"
    spec.write_text((Path(__file__).resolve().parent.parent / "specs" / "mlp_digits.yaml").read_text()
                    + "tune:\n  grid: {layers.fc1.units: [20, 40]}\n  random: {train.lr: 'loguniform(1e-3, 1e-2)'}\n  trials: 3\n")
    assert _has_tune_section(spec)
    dims, extra = space_from_file(spec)
    assert [(d.path, d.kind) for d in dims] == [("layers.fc1.units", "grid"), ("train.lr", "loguniform")]
    assert extra == {"trials": 3}
    r = subprocess.run(["graphc", "compile", str(spec)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    spec.write_text(spec.read_text().replace("trials: 3", "trails: 3"))
    r = subprocess.run(["graphc", "compile", str(spec)], capture_output=True, text=True)
    assert r.returncode == 65 and "unknown key 'trails' in spec at 'tune' — did you mean 'trials'?" in r.stderr
