"""Running ``graphc tune``'s trials on Dask: each trial is a ``graphc train`` run on a worker.

A trial whose worker dies is resubmitted by Dask (``distributed.scheduler.allowed-failures``, and
``retries=`` for errors raised by the task); when those are used up it ends as "failed" with the reason.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sys
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from ..errors import GraphcError
from .space import values_text
from .store import Search


def run_trial(spec: str, sets: list[str], run_dir: str, trial_id: str, crash_once: str | None = None,
              backend: str | None = None) -> dict:
    """Train one candidate into ``run_dir`` (runs on a Dask worker); output goes to ``run_dir/train.log``.

    ``crash_once`` (a marker file path; for tests): when the marker does not exist yet, create it and
    kill this worker process with SIGKILL — a worker dying in the middle of a trial.
    """
    from ..train.loop import Options, train

    if crash_once and not os.path.exists(crash_once):
        Path(crash_once).write_text(f"{trial_id} {os.getpid()}\n")
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    run = Path(run_dir)
    started = time.monotonic()
    try:
        code = None
        if resumable(run):  # a trial stopped half way (Ctrl-C, SIGTERM, a dead worker) continues from its checkpoint
            with open(run / "train.log", "a") as log, redirect_stdout(log), redirect_stderr(log):
                try:
                    code = train(Options(spec=None, resume=str(run), progress=False, backend=backend))
                except GraphcError as e:  # damaged beyond resuming: the trial starts again
                    print(f"graphc tune: cannot continue this trial ({e}); starting it again")
        if code is None:
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir(parents=True)
            with open(run / "train.log", "w") as log, redirect_stdout(log), redirect_stderr(log):
                code = train(Options(spec=spec, out=str(run), sets=list(sets), progress=False, backend=backend))
    except GraphcError as e:
        return {"status": "failed", "reason": "; ".join(str(d) for d in e.diagnostics),
                "wall_seconds": round(time.monotonic() - started, 3), "worker_pid": os.getpid()}
    try:
        m = json.loads((run / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {"status": "failed", "reason": f"training exited with code {code} and left no metrics.json ({e})",
                "worker_pid": os.getpid()}
    status, reason = "ok", None
    if code != 0:
        status, reason = "failed", f"training stopped: {m.get('stopped')} (exit code {code}; see {run / 'train.log'})"
    return {"status": status, "reason": reason, "val_accuracy": m.get("best_val_accuracy"), "val_loss": m.get("best_val_loss"),
            "test_accuracy": m.get("test_accuracy"), "test_loss": m.get("test_loss"), "epochs": m.get("epochs_run"),
            "best_epoch": m.get("best_epoch"), "stopped": m.get("stopped"), "wall_seconds": m.get("wall_seconds"),
            "worker_pid": os.getpid()}


def resumable(run: Path) -> bool:
    """Whether a trial's run directory holds a started run with a checkpoint to continue from."""
    from ..train import checkpoint

    return (run / "run.json").is_file() and bool(checkpoint.listed(run))


def train_pending(search: Search, opts) -> int:
    """Train every trial of ``search`` that has not finished on Dask, saving the search after each result."""
    pending = [t for t in search.trials if t["status"] not in ("ok", "rejected")]
    total = len(search.trials)
    done = total - len(pending)
    counts = {s: sum(t["status"] == s for t in search.trials) for s in ("ok", "rejected", "failed")}
    started = time.monotonic()
    if pending:
        from distributed import as_completed

        client, cluster = open_client(opts)
        ticker = Ticker(search, opts, started)
        try:
            where = client.scheduler.address if opts.scheduler else f"a LocalCluster of {len(client.scheduler_info()['workers'])} workers"
            say(opts, f"graphc tune: {len(pending)} trials to train on {where} "
                      f"({done} of {total} already finished or rejected)")
            futures = {}
            for t in pending:
                if t["status"] == "failed":
                    counts["failed"] -= 1
                t["status"], t["reason"] = "pending", None
                fut = client.submit(run_trial, search.state["spec"], search.state["sets"] + t["sets"],
                                    str((search.out / "trials" / t["id"]).resolve()), t["id"], opts.crash_once.get(t["id"]),
                                    search.state.get("backend"),
                                    key=f"graphc-tune-{search.state['uid']}-{t['id']}", retries=opts.retries, pure=False)
                futures[fut] = t
            for fut in as_completed(list(futures)):
                t = futures[fut]
                if fut.status == "finished":
                    t.update(fut.result())
                else:
                    exc = fut.exception()
                    name = type(exc).__name__
                    why = (f"the worker running it died repeatedly ({name}: {exc})" if name == "KilledWorker"
                           else f"{name}: {exc}")
                    t.update({"status": "failed", "reason": why})
                t["run_dir"] = str(Path("trials") / t["id"])
                done += 1
                counts[t["status"]] = counts.get(t["status"], 0) + 1
                search.save()
                acc = f"val {100 * t['val_accuracy']:.2f}%" if t.get("val_accuracy") is not None else t["status"]
                best = search.best()
                best_text = f"{100 * best['val_accuracy']:.2f}%" if best else "-"
                ticker.say(f"[{done:>{len(str(total))}}/{total}] {_bar(done, total)} {t['id']} {acc:<11} "
                           f"{values_text(t['values'])}  | ok {counts['ok']} · rejected {counts['rejected']} · "
                           f"failed {counts['failed']} · best {best_text} · {time.monotonic() - started:.1f}s")
                fut.release()
        finally:
            ticker.stop()
            client.close() if opts.client is None else None
            if cluster is not None:
                cluster.close()
    search.state["finished"] = True
    search.save()
    return 0


class Ticker:
    """The progress line while trials train: each running trial's epochs from its run directory (the
    trial rewrites ``metrics.csv`` after every epoch and ``spec.json`` holds its ``train.epochs``),
    read by a thread every ``opts.progress_every`` seconds (``--progress-every``, default 1). On a
    terminal the line is rewritten in place (and cleared before each finished-trial line); in a log a
    new line is written only when it changed and at most every :attr:`LOG_EVERY` seconds (or the tick,
    if longer), so a long search does not flood it."""

    LOG_EVERY = 10.0

    def __init__(self, search: Search, opts, started: float):
        self.search, self.opts, self.started = search, opts, started
        self.tick = opts.progress_every
        self.log_every = max(self.LOG_EVERY, self.tick)
        self.tty = sys.stderr.isatty()
        self.lock = threading.Lock()
        self.shown, self.last, self.on_screen = "", -math.inf, False
        self.planned: dict[str, int] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="graphc-tune-progress", daemon=True)
        if opts.progress:
            self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(self.tick):
            try:
                text = self.line()
            except Exception:  # noqa: BLE001 - a half-written or vanished run directory: next tick
                continue
            self._show(text)

    def _epochs(self, run: Path) -> int | None:
        trial = run.name
        if trial not in self.planned:
            from ..spec.models import TrainDecl

            train = json.loads((run / "spec.json").read_text()).get("train") or {}
            self.planned[trial] = int(train.get("epochs", TrainDecl.model_fields["epochs"].default))
        return self.planned[trial]

    def line(self) -> str:
        """``training t003 epoch 4/20 (val 91.3%, ETA 6s) · t004 epoch 1/20 | 2/8 finished · 12.4s``."""
        parts, finished = [], 0
        for t in self.search.trials:
            if t["status"] != "pending":
                finished += 1
                continue
            run = self.search.out / "trials" / t["id"]
            if not (run / "run.json").is_file():
                continue  # queued, or still compiling on its worker
            rows = []
            if (run / "metrics.csv").is_file():
                with open(run / "metrics.csv", newline="") as f:
                    rows = list(csv.DictReader(f))
            text = f"{t['id']} epoch {len(rows)}/{self._epochs(run)}"
            if rows:
                val = rows[-1].get("val_accuracy")
                eta = rows[-1].get("eta_seconds")
                extra = ([f"val {100 * float(val):.1f}%"] if val else []) + ([f"ETA {float(eta):.0f}s"] if eta else [])
                text += f" ({', '.join(extra)})" if extra else ""
            parts.append(text)
        if not parts:
            return ""
        return (f"training {' · '.join(parts)} | {finished}/{len(self.search.trials)} finished · "
                f"{time.monotonic() - self.started:.1f}s")

    def _show(self, text: str) -> None:
        with self.lock:
            if not text or self.done.is_set():
                return
            if self.tty:
                sys.stderr.write(f"\r{text}\033[K")
                self.on_screen = True
            elif text != self.shown and time.monotonic() - self.last >= self.log_every:
                sys.stderr.write(text + "\n")
                self.last = time.monotonic()
            else:
                return
            self.shown = text
            sys.stderr.flush()

    def _clear(self) -> None:
        if self.on_screen:
            sys.stderr.write("\r\033[K")
            self.on_screen = False

    def say(self, text: str) -> None:
        """A finished-trial line, below (on a terminal: instead of) the progress line."""
        with self.lock:
            self._clear()
            say(self.opts, text)

    def stop(self) -> None:
        self.done.set()
        with self.lock:
            self._clear()
            sys.stderr.flush()


def _bar(done: int, total: int, width: int = 20) -> str:
    fill = int(width * done / max(total, 1))
    return f"[{'#' * fill}{'.' * (width - fill)}]"


def say(opts, text: str) -> None:
    if opts.progress:
        print(text, file=sys.stderr, flush=True)


def open_client(opts):
    """(client, cluster to close or None): the given client, a connection to ``--scheduler``, or an
    embedded LocalCluster of ``--workers`` processes (default: one per CPU), one thread each."""
    import logging

    from distributed import Client, LocalCluster

    if opts.client is not None:
        return opts.client, None
    if opts.scheduler:
        try:
            return Client(opts.scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as e:
            raise GraphcError(f"--scheduler {opts.scheduler}: cannot connect ({e})",
                              hint="start one with 'dask scheduler' and workers with 'dask worker tcp://HOST:8786'") from None
    n = opts.workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.ERROR)
    return Client(cluster), cluster
