"""The same 8-trial `graphc tune` search on an embedded LocalCluster with 1 worker process and with 2:
wall time of the whole search (cluster start included and excluded) and the speed-up.

    python tools/bench_tune.py [--trials 8] [--epochs 50] [--spec specs/mlp_digits.yaml]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from graphc.tune.search import TuneOptions, tune  # noqa: E402


def search(workers: int, trials: int, epochs: int, spec: str, out: Path) -> tuple[float, float]:
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.ERROR)
    client = Client(cluster)
    client.run(lambda: None)  # the workers are up
    t1 = time.perf_counter()
    try:
        tune(TuneOptions(spec=spec, random=["train.lr=loguniform(1e-3,3e-2)", "layers.fc1.units=int(32,256)"],
                         trials=trials, seed=0, sets=[f"train.epochs={epochs}"], out=str(out), client=client, progress=False))
    finally:
        t2 = time.perf_counter()
        client.close()
        cluster.close()
    return t2 - t1, t2 - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--spec", default=str(ROOT / "specs" / "mlp_digits.yaml"))
    a = ap.parse_args()
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w in (1, 2):
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):
                times[w] = search(w, a.trials, a.epochs, a.spec, Path(tmp) / f"w{w}")
            print(f"{w} worker{'s' if w > 1 else ' '}: search {times[w][0]:6.2f} s  (with cluster start {times[w][1]:6.2f} s)")
    print(f"speed-up 1 → 2 workers: {times[1][0] / times[2][0]:.2f}× (search), {times[1][1] / times[2][1]:.2f}× "
          f"(with cluster start); {a.trials} trials × {a.epochs} epochs of {Path(a.spec).name}")


if __name__ == "__main__":
    main()
