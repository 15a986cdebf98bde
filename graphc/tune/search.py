"""``graphc tune``: hyperparameter search on Dask, with every candidate compiled before it is trained.

A search space names spec values by the dotted paths of ``graphc train --set`` (``train.lr``,
``layers.fc1.units``, ``loss.l2``, …). Grid dimensions (``--grid path=v1,v2``) are crossed; random
dimensions (``--random path=loguniform(1e-4,1e-1)``; also ``uniform(a,b)``, ``int(a,b)`` with both ends
included, ``choice(a,b,c)``) are sampled ``--trials`` times per grid point from ``--seed``.

Pipeline (each stage a plain function)::

    expand(dims, trials, seed)        the candidates: one {path: value} mapping each
    prefilter(spec, sets, cand, ...)  load + validate + build the graph with the candidate's --set values,
                                      and check --max-params/--max-macs/--max-memory: a candidate that
                                      fails is "rejected" with the values, the layer and the message
    run_trial(...)                    (on a Dask worker) graphc.trainer.train into OUT/trials/<id>/
    Search.run()                      submit every pending trial, collect them with as_completed,
                                      persisting OUT/tune.json atomically after each result

Output directory (``--out``)::

    tune.json       the search: spec, fixed --set values, space, seed, budgets and every trial with its
                    status (pending, ok, rejected, failed) and results — what --resume and --refine read
    results.csv     one row per trial, sorted by the validation metric (rejected and failed last)
    results.json    the same rows
    best.yaml       the best trial's complete spec (the search values applied): graphc train accepts it
    tune.png        the validation metric against each searched value (log axes for log-uniform ones)
    trials/<id>/    each trained trial's run directory (metrics, curves, best.npz, train.log)

Memory budget: ``params × 4 bytes + activation bytes per example × train.batch_size`` (float32).
A trial whose worker dies is resubmitted by Dask (``distributed.scheduler.allowed-failures``, and
``retries=`` for errors raised by the task); when those are used up it ends as "failed" with the reason.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
import shutil
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import GraphcError
from .files import write_atomic

KINDS = ("grid", "uniform", "loguniform", "int", "choice")
STATE = "tune.json"
RESULT_COLUMNS = ("rank", "trial", "status", "val_accuracy", "val_loss", "test_accuracy", "test_loss", "epochs",
                  "wall_seconds", "params", "macs", "memory_bytes", "reason", "run_dir")
SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "kb": 2**10, "mb": 2**20, "gb": 2**30, "tb": 2**40,
            "kib": 2**10, "mib": 2**20, "gib": 2**30, "b": 1}


# --- the search space -----------------------------------------------------------------------------

@dataclass
class Dim:
    """One searched value: ``path`` (as ``--set``), ``kind`` (one of KINDS) and ``args``: the values
    for grid and choice, ``[low, high]`` for uniform, loguniform and int."""

    path: str
    kind: str
    args: list

    def sample(self, rng):
        if self.kind in ("grid", "choice"):
            return self.args[int(rng.integers(len(self.args)))]
        lo, hi = self.args
        if self.kind == "int":
            return int(rng.integers(int(lo), int(hi) + 1))
        if self.kind == "loguniform":
            return _round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        return _round(float(rng.uniform(lo, hi)))

    def describe(self) -> str:
        if self.kind == "grid":
            return f"{self.path}={','.join(map(_text, self.args))}"
        return f"{self.path}={self.kind}({','.join(map(_text, self.args))})"

    def to_json(self) -> dict:
        return {"path": self.path, "kind": self.kind, "args": self.args}

    @classmethod
    def from_json(cls, d: dict) -> "Dim":
        return cls(d["path"], d["kind"], list(d["args"]))


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def _text(v) -> str:
    """A value as ``--set`` reads it (YAML; JSON is YAML)."""
    return json.dumps(v)


def _read_value(raw: str, what: str):
    from .trainspec import parse_assignment

    try:
        return parse_assignment(f"value={raw}")[1]
    except GraphcError:
        raise GraphcError(f"{what}: cannot read the value '{raw}'") from None


def _split(raw: str) -> list[str]:
    """Split on commas outside brackets and quotes: ``1,[2,3],'a,b'`` → three items."""
    items, depth, quote, cur = [], 0, None, ""
    for ch in raw:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
            continue
        cur += ch
    items.append(cur.strip())
    return [i for i in items if i != ""]


def _path_and_rest(text: str, flag: str) -> tuple[str, str]:
    path, sep, rest = text.partition("=")
    if not sep or not path.strip() or not rest.strip():
        raise GraphcError(f"{flag} {text}: expected PATH=VALUES, for example {flag} "
                          f"{'train.lr=1e-3,1e-2' if flag == '--grid' else 'train.lr=loguniform(1e-4,1e-1)'}")
    return path.strip(), rest.strip()


def parse_grid(text: str) -> Dim:
    """``layers.fc1.units=50,100,200`` (values read as YAML)."""
    path, rest = _path_and_rest(text, "--grid")
    values = [_read_value(v, f"--grid {text}") for v in _split(rest)]
    if not values:
        raise GraphcError(f"--grid {text}: no values")
    return Dim(path, "grid", values)


def parse_random(text: str, flag: str = "--random") -> Dim:
    """``train.lr=loguniform(1e-4,1e-1)``, ``uniform(a,b)``, ``int(a,b)``, ``choice(a,b,c)``."""
    path, rest = _path_and_rest(text, flag)
    m = re.fullmatch(r"(\w+)\s*\((.*)\)", rest)
    kinds = ("uniform", "loguniform", "int", "choice")
    if not m or m.group(1) not in kinds:
        from .errors import did_you_mean

        got = m.group(1) if m else rest
        raise GraphcError(f"{flag} {text}: '{got}' is not a distribution",
                          hint=(did_you_mean(got, list(kinds), "distribution") if m else None)
                          or "use uniform(a,b), loguniform(a,b), int(a,b) or choice(a,b,...)")
    kind = m.group(1)
    args = [_read_value(v, f"{flag} {text}") for v in _split(m.group(2))]
    return _checked(Dim(path, kind, args), f"{flag} {text}")


def _checked(d: Dim, what: str) -> Dim:
    if d.kind == "choice":
        if not d.args:
            raise GraphcError(f"{what}: choice() needs at least one value")
        return d
    if d.kind == "grid":
        return d
    if len(d.args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in d.args):
        raise GraphcError(f"{what}: {d.kind}() takes two numbers, low and high")
    lo, hi = d.args
    if lo > hi:
        raise GraphcError(f"{what}: low {lo} is above high {hi}")
    if d.kind == "loguniform" and lo <= 0:
        raise GraphcError(f"{what}: loguniform() needs low > 0 (it samples log(low)..log(high))")
    if d.kind == "int" and (lo != int(lo) or hi != int(hi)):
        raise GraphcError(f"{what}: int() takes whole numbers")
    return Dim(d.path, d.kind, [int(lo), int(hi)] if d.kind == "int" else [float(lo), float(hi)])


def space_from_file(path: str | Path) -> tuple[list[Dim], dict]:
    """A search space from YAML — a spec's ``tune:`` section, or a file with a ``tune:`` mapping (or
    just the mapping at the top level) — with ``grid: {path: [values]}``,
    ``random: {path: "loguniform(1e-4,1e-1)"}`` and optional ``trials:``, ``seed:``."""
    from .yamlsafe import load_yaml_file

    data = load_yaml_file(path)
    if isinstance(data, dict) and "tune" in data:
        data = data["tune"]
    if not isinstance(data, dict):
        raise GraphcError(f"--space {path}: expected a mapping with grid: and/or random:")
    unknown = set(data) - {"grid", "random", "trials", "seed"}
    if unknown:
        raise GraphcError(f"--space {path}: unknown keys {sorted(unknown)}", hint="use grid, random, trials, seed")
    dims = []
    for p, values in (data.get("grid") or {}).items():
        values = values if isinstance(values, list) else [values]
        dims.append(Dim(str(p), "grid", [_plain(v) for v in values]))
    for p, dist in (data.get("random") or {}).items():
        dims.append(parse_random(f"{p}={dist}", f"--space {path}: random"))
    extra = {k: data[k] for k in ("trials", "seed") if k in data}
    return dims, extra


def _has_tune_section(path) -> bool:
    """Whether a spec file has a ``tune:`` section (the search space when no --space is given)."""
    from .yamlsafe import load_yaml_file

    data = load_yaml_file(path)
    return isinstance(data, dict) and isinstance(data.get("tune"), dict)


def _plain(v):
    return json.loads(json.dumps(v, default=str))


def expand(dims: list[Dim], trials: int, seed: int) -> list[dict[str, Any]]:
    """Every candidate: the grid's cross product, times ``trials`` random draws when there are random
    dimensions (reproducible from ``seed``)."""
    import numpy as np

    paths = [d.path for d in dims]
    if len(set(paths)) != len(paths):
        dup = sorted({p for p in paths if paths.count(p) > 1})
        raise GraphcError(f"the search space names {', '.join(dup)} more than once")
    grid = [d for d in dims if d.kind == "grid"]
    rand = [d for d in dims if d.kind != "grid"]
    rng = np.random.default_rng(seed)
    out = []
    for point in itertools.product(*(d.args for d in grid)):
        for _ in range(trials if rand else 1):
            cand = dict(zip((d.path for d in grid), point))
            for d in rand:
                cand[d.path] = d.sample(rng)
            out.append({d.path: cand[d.path] for d in dims})
    return out


def sets_of(values: dict[str, Any]) -> list[str]:
    return [f"{p}={_text(v)}" for p, v in values.items()]


def values_text(values: dict[str, Any]) -> str:
    return " ".join(f"{p}={_fmt(v)}" for p, v in values.items())


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v) if not isinstance(v, str) else v


# --- the static pre-filter -------------------------------------------------------------------------

@dataclass
class Budgets:
    max_params: int | None = None
    max_macs: int | None = None
    max_memory: int | None = None


def parse_amount(text: str) -> int:
    """``1000``, ``2.5M``, ``1e6``, ``64MB``, ``1GiB`` → an integer (k/M/G/T decimal; kB/MB/GB binary)."""
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).lower() not in SUFFIXES:
        raise ValueError(f"'{text}' is not an amount (examples: 500000, 2.5M, 64MB)")
    try:
        return int(float(m.group(1)) * SUFFIXES[m.group(2).lower()])
    except ValueError:
        raise ValueError(f"'{text}' is not an amount (examples: 500000, 2.5M, 64MB)") from None


def prefilter(spec: str, fixed: list[str], values: dict[str, Any], budgets: Budgets) -> dict:
    """Compile one candidate without training it: ``{"status": "ok", params, macs, memory_bytes}`` or
    ``{"status": "rejected", "reason": …, "layer": …}`` naming the values, the layer and the message."""
    from .report import compile_report
    from .trainspec import data_inputs, load_for_training

    shown = values_text(values) or "(the spec as it is)"
    try:
        graph, t, _, _ = load_for_training(spec, list(fixed) + sets_of(values))
        data_inputs(graph)
    except GraphcError as e:
        first = e.diagnostics[0]
        layer = _layer_of(first.message)
        msgs = "; ".join(f"{d.message}" + (f" ({d.loc})" if d.loc else "") + (f" — {d.hint}" if d.hint else "")
                         for d in e.diagnostics)
        return {"status": "rejected", "layer": layer, "reason": f"{shown}: {msgs}"}
    report = compile_report(graph)
    params, macs = report["params_total"], report["macs_total"]
    memory = 4 * params + report["activation_bytes_total"] * t.batch_size
    out = {"status": "ok", "params": params, "macs": macs, "memory_bytes": memory}

    def largest(key):
        rows = [r for r in report["layers"] if r.get(key)]
        return max(rows, key=lambda r: r[key]) if rows else None

    for name, have, limit, key, unit in (("params", params, budgets.max_params, "params", ""),
                                         ("MACs", macs, budgets.max_macs, "macs", ""),
                                         ("memory", memory, budgets.max_memory, "activation_bytes", " bytes")):
        if limit is not None and have > limit:
            big = largest(key)
            where = f" (largest layer: {big['op']} '{big['name']}' with {big[key]:,}{unit})" if big else ""
            flag = {"params": "--max-params", "MACs": "--max-macs", "memory": "--max-memory"}[name]
            return {**out, "status": "rejected", "layer": big["name"] if big else None,
                    "reason": f"{shown}: {name} {have:,}{unit} exceed {flag} {limit:,}{where}"}
    return out


def _layer_of(message: str) -> str | None:
    m = re.match(r"\s*[\w.]+ '([^']+)'", message)
    return m.group(1) if m else None


# --- one trial, on a worker ------------------------------------------------------------------------

def run_trial(spec: str, sets: list[str], run_dir: str, trial_id: str, crash_once: str | None = None) -> dict:
    """Train one candidate into ``run_dir`` (runs on a Dask worker); output goes to ``run_dir/train.log``.

    ``crash_once`` (a marker file path; for tests): when the marker does not exist yet, create it and
    kill this worker process with SIGKILL — a worker dying in the middle of a trial.
    """
    from .trainer import Options, train

    if crash_once and not os.path.exists(crash_once):
        Path(crash_once).write_text(f"{trial_id} {os.getpid()}\n")
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    run = Path(run_dir)
    shutil.rmtree(run, ignore_errors=True)  # a trial that a dead worker left half done starts again
    run.mkdir(parents=True)
    started = time.monotonic()
    try:
        with open(run / "train.log", "w") as log, redirect_stdout(log), redirect_stderr(log):
            code = train(Options(spec=spec, out=str(run), sets=list(sets), progress=False))
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


# --- the search ------------------------------------------------------------------------------------

@dataclass
class TuneOptions:
    spec: str | None = None
    grid: list[str] = field(default_factory=list)
    random: list[str] = field(default_factory=list)
    space: str | None = None
    trials: int | None = None
    seed: int | None = None
    sets: list[str] = field(default_factory=list)
    budgets: Budgets = field(default_factory=Budgets)
    workers: int | None = None
    scheduler: str | None = None
    out: str | None = None
    resume: str | None = None
    refine: str | None = None
    top: int = 3
    retries: int = 2
    progress: bool = True
    client: Any = None  # an existing dask.distributed.Client (Python API; tests share one cluster)
    crash_once: dict[str, str] = field(default_factory=dict)  # trial id -> marker file (tests: kill the worker once)


def sort_key(t: dict):
    order = {"ok": 0, "failed": 1, "pending": 2, "rejected": 3}[t["status"]]
    acc = t.get("val_accuracy")
    loss = t.get("val_loss")
    return (order, -(acc if acc is not None else -1), loss if loss is not None else math.inf, t["id"])


class Search:
    def __init__(self, out: Path, state: dict):
        self.out, self.state = out, state

    @property
    def trials(self) -> list[dict]:
        return self.state["trials"]

    def dims(self) -> list[Dim]:
        return [Dim.from_json(d) for d in self.state["dims"]]

    def save(self) -> None:
        write_atomic(self.out / STATE, json.dumps(self.state, indent=1, default=str) + "\n")
        self.write_results()

    # --- results -----------------------------------------------------------------------------

    def ranked(self) -> list[dict]:
        return sorted(self.trials, key=sort_key)

    def rows(self) -> list[dict]:
        rows = []
        for rank, t in enumerate(self.ranked(), 1):
            row = {"rank": rank if t["status"] == "ok" else None, "trial": t["id"], "status": t["status"]}
            row.update({f"value:{p}": v for p, v in t["values"].items()})
            for c in RESULT_COLUMNS[3:]:
                row[c] = t.get(c)
            rows.append(row)
        return rows

    def write_results(self) -> None:
        rows = self.rows()
        write_atomic(self.out / "results.json", json.dumps(rows, indent=1, default=str) + "\n")
        cols = list(rows[0]) if rows else list(RESULT_COLUMNS)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
        write_atomic(self.out / "results.csv", buf.getvalue())

    def table(self, limit: int | None = None) -> str:
        paths = [d["path"] for d in self.state["dims"]]
        head = ["#", "trial", *paths, "val acc", "test acc", "epochs", "wall s", "params", "MACs", "status / reason"]
        lines = []
        for rank, t in enumerate(self.ranked(), 1):
            def pct(k):
                return f"{100 * t[k]:.2f}%" if t.get(k) is not None else "-"

            def num(k):
                return f"{t[k]:,}" if t.get(k) is not None else "-"

            status = t["status"] if t["status"] == "ok" else f"{t['status']}: {t.get('reason') or ''}"
            lines.append([str(rank) if t["status"] == "ok" else "-", t["id"], *(_fmt(t["values"][p]) for p in paths),
                          pct("val_accuracy"), pct("test_accuracy"), num("epochs"),
                          f"{t['wall_seconds']:.2f}" if t.get("wall_seconds") is not None else "-", num("params"), num("macs"),
                          status])
        if limit is not None and len(lines) > limit:
            lines = lines[:limit] + [["…"] + [""] * (len(head) - 1)]
        widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head) - 1)]
        fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]  # noqa: E731
        return "\n".join([fmt(head), *map(fmt, lines)])

    def best(self) -> dict | None:
        ok = [t for t in self.trials if t["status"] == "ok" and t.get("val_accuracy") is not None]
        return min(ok, key=sort_key) if ok else None

    def write_best(self) -> Path | None:
        best = self.best()
        if best is None:
            return None
        text = best_spec_text(self.state["spec"], self.state["sets"] + best["sets"],
                              f"graphc tune: best of {len(self.trials)} trials: {best['id']} "
                              f"(validation accuracy {100 * best['val_accuracy']:.2f}%) with {values_text(best['values'])}")
        write_atomic(self.out / "best.yaml", text)
        return self.out / "best.yaml"

    def write_plot(self) -> Path | None:
        ok = [t for t in self.trials if t["status"] == "ok" and t.get("val_accuracy") is not None]
        if not ok or not self.state["dims"]:
            return None
        write_atomic(self.out / "tune.png", plot(self.dims(), ok, str(self.state.get("name"))))
        return self.out / "tune.png"

    # --- running -----------------------------------------------------------------------------

    def run(self, opts: TuneOptions) -> int:
        pending = [t for t in self.trials if t["status"] not in ("ok", "rejected")]
        total = len(self.trials)
        done = total - len(pending)
        counts = {s: sum(t["status"] == s for t in self.trials) for s in ("ok", "rejected", "failed")}
        started = time.monotonic()
        if pending:
            from distributed import as_completed

            client, cluster = open_client(opts)
            try:
                where = client.scheduler.address if opts.scheduler else f"a LocalCluster of {len(client.scheduler_info()['workers'])} workers"
                say(opts, f"graphc tune: {len(pending)} trials to train on {where} "
                          f"({done} of {total} already finished or rejected)")
                futures = {}
                for t in pending:
                    if t["status"] == "failed":
                        counts["failed"] -= 1
                    t["status"], t["reason"] = "pending", None
                    fut = client.submit(run_trial, self.state["spec"], self.state["sets"] + t["sets"],
                                        str((self.out / "trials" / t["id"]).resolve()), t["id"], opts.crash_once.get(t["id"]),
                                        key=f"graphc-tune-{self.state['uid']}-{t['id']}", retries=opts.retries, pure=False)
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
                    self.save()
                    acc = f"val {100 * t['val_accuracy']:.2f}%" if t.get("val_accuracy") is not None else t["status"]
                    best = self.best()
                    best_text = f"{100 * best['val_accuracy']:.2f}%" if best else "-"
                    say(opts, f"[{done:>{len(str(total))}}/{total}] {_bar(done, total)} {t['id']} {acc:<11} "
                              f"{values_text(t['values'])}  | ok {counts['ok']} · rejected {counts['rejected']} · "
                              f"failed {counts['failed']} · best {best_text} · {time.monotonic() - started:.1f}s")
                    fut.release()
            finally:
                client.close() if opts.client is None else None
                if cluster is not None:
                    cluster.close()
        self.state["finished"] = True
        self.save()
        return 0


def _bar(done: int, total: int, width: int = 20) -> str:
    fill = int(width * done / max(total, 1))
    return f"[{'#' * fill}{'.' * (width - fill)}]"


def say(opts: TuneOptions, text: str) -> None:
    if opts.progress:
        print(text, file=sys.stderr, flush=True)


def open_client(opts: TuneOptions):
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


def _new_out(spec: str, out: str | None, suffix: str = "") -> Path:
    if out:
        path = Path(out)
        if (path / STATE).exists():
            raise GraphcError(f"--out {path} already holds a search", hint=f"continue it with --resume {path}, or choose another --out")
        return path
    base = Path("runs") / f"tune-{Path(spec).stem}{suffix}"
    path, k = base, 1
    while (path / STATE).exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def _read_state(directory: str, flag: str) -> dict:
    path = Path(directory) / STATE
    if not path.is_file():
        raise GraphcError(f"{flag} {directory}: not a graphc tune directory (no {STATE})")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GraphcError(f"{flag} {directory}: cannot read {STATE}: {e}") from None


def plan(opts: TuneOptions) -> tuple[Path, dict]:
    """A new search's output directory and state: the space expanded, every candidate pre-filtered."""
    if opts.refine:
        old = _read_state(opts.refine, "--refine")
        spec, fixed = old["spec"], list(old["sets"]) + list(opts.sets)
        dims = refine_space([Dim.from_json(d) for d in old["dims"]], old["trials"], opts.top)
        trials = opts.trials or old.get("trials_per_point") or 8
        seed = opts.seed if opts.seed is not None else int(old.get("seed", 0)) + 1
        out = _new_out(spec, opts.out or f"{opts.refine.rstrip('/')}-refine", "")
        extra = {"refined_from": str(Path(opts.refine).resolve())}
    else:
        if not opts.spec:
            raise GraphcError("graphc tune needs a SPEC (or --resume DIR, or --refine DIR)")
        if not Path(opts.spec).is_file():
            raise GraphcError(f"no such spec file: {opts.spec}")
        spec, fixed = str(Path(opts.spec).resolve()), list(opts.sets)
        source = opts.space or (opts.spec if _has_tune_section(opts.spec) else None)
        dims, file_extra = space_from_file(source) if source else ([], {})
        dims += [parse_grid(g) for g in opts.grid] + [parse_random(r) for r in opts.random]
        if not dims:
            raise GraphcError("the search space is empty",
                              hint="add --grid PATH=v1,v2 or --random PATH=loguniform(a,b) (or --space FILE)")
        trials = opts.trials or file_extra.get("trials") or 8
        seed = opts.seed if opts.seed is not None else int(file_extra.get("seed", 0))
        out = _new_out(spec, opts.out)
        extra = {}
    from .trainspec import apply_set
    from .yamlsafe import load_yaml_file

    probe = load_yaml_file(spec)
    for s in fixed:
        apply_set(probe, s)
    for d in dims:  # a path that the spec does not have is an error of the command line, not of one trial
        apply_set(probe, f"{d.path}={_text(d.args[0])}")
    cands = expand(dims, trials, seed)
    budgets = opts.budgets
    state = {"graphc_tune": 1, "uid": os.urandom(4).hex(), "spec": spec, "name": Path(spec).stem, "sets": fixed,
             "dims": [d.to_json() for d in dims], "trials_per_point": trials, "seed": seed,
             "budgets": {"max_params": budgets.max_params, "max_macs": budgets.max_macs, "max_memory": budgets.max_memory},
             "command": sys.argv, **extra, "trials": []}
    width = max(3, len(str(len(cands) - 1)))
    for i, values in enumerate(cands):
        t = {"id": f"t{i:0{width}d}", "values": values, "sets": sets_of(values)}
        t.update(prefilter(spec, fixed, values, budgets))
        if t["status"] == "ok":
            t["status"] = "pending"
        state["trials"].append(t)
    return out, state


def tune(opts: TuneOptions) -> int:
    """Run (or resume, or refine) a search; returns the exit code."""
    if opts.resume:
        out = Path(opts.resume)
        state = _read_state(opts.resume, "--resume")
        state["uid"] = os.urandom(4).hex()
    else:
        out, state = plan(opts)
        out.mkdir(parents=True, exist_ok=True)
    (out / "trials").mkdir(parents=True, exist_ok=True)
    search = Search(out, state)
    search.save()  # the trial list is on disk before anything is trained
    rejected = [t for t in search.trials if t["status"] == "rejected"]
    if rejected and not opts.resume:
        say(opts, f"graphc tune: {len(rejected)} of {len(search.trials)} candidates rejected before training:")
        for t in rejected:
            say(opts, f"  {t['id']} {t['reason']}")
    code = search.run(opts)
    best = search.write_best()
    png = search.write_plot()
    print(search.table())
    print(f"results: {out / 'results.csv'}, {out / 'results.json'}" + (f"; plot: {png}" if png else ""))
    if best:
        b = search.best()
        print(f"best: {b['id']} {values_text(b['values'])} — validation accuracy {100 * b['val_accuracy']:.2f}%"
              + (f", test {100 * b['test_accuracy']:.2f}%" if b.get("test_accuracy") is not None else "")
              + f"; spec: {best} (graphc train {best})")
    else:
        print("best: no trial finished training")
    return code


# --- best.yaml ---------------------------------------------------------------------------------------

def best_spec_text(spec: str, sets: list[str], comment: str) -> str:
    """The spec with ``sets`` applied, as YAML; relative ``include:`` files and ``train.data`` paths are
    made absolute so the file works from anywhere."""
    import yaml

    from .trainspec import apply_set
    from .yamlsafe import load_yaml_file

    data = load_yaml_file(spec)
    for s in sets:
        apply_set(data, s)
    data = _plain(data)
    base = Path(spec).parent
    if isinstance(data.get("include"), list):
        data["include"] = [str((base / p).resolve()) if not Path(p).is_absolute() else p for p in data["include"]]
    tr = data.get("train")
    if isinstance(tr, dict) and isinstance(tr.get("data"), str) and tr["data"].endswith(".npz") and not Path(tr["data"]).is_absolute():
        tr["data"] = str((base / tr["data"]).resolve())
    return f"# {comment}\n# from {spec}\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110, default_flow_style=None)


# --- the plot -----------------------------------------------------------------------------------------

def plot(dims: list[Dim], trials: list[dict], title: str) -> bytes:
    """Validation accuracy against each searched value (log x for log-uniform dimensions)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    n = len(dims)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    best = min(trials, key=sort_key)
    for ax, d in zip(axes, dims):
        xs = [t["values"][d.path] for t in trials]
        ys = [100 * t["val_accuracy"] for t in trials]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        if not numeric:
            labels = sorted({str(x) for x in xs})
            pos = {s: i for i, s in enumerate(labels)}
            xs = [pos[str(x)] for x in xs]
            ax.set_xticks(range(len(labels)), labels)
        ax.scatter(xs, ys, s=22, alpha=0.75)
        bx = best["values"][d.path]
        ax.scatter([bx if numeric else pos[str(bx)]], [100 * best["val_accuracy"]], marker="*", s=160, color="C3",
                   label=f"best ({best['id']})")
        if d.kind == "loguniform" or (numeric and d.kind == "grid" and min(xs) > 0 and max(xs) / min(xs) >= 100):
            ax.set_xscale("log")
        ax.set(xlabel=f"{d.path} ({d.kind})", ylabel="validation accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: {len(trials)} trained trials")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# --- coarse to fine ---------------------------------------------------------------------------------

def refine_space(dims: list[Dim], trials: list[dict], top: int = 3) -> list[Dim]:
    """A finer space around the ``top`` best trained trials: each numeric range narrowed to the span of
    their values plus a margin (a quarter of that span, at least a tenth of the old range; in log space
    for log-uniform dimensions); a grid or choice keeps the values the top trials used."""
    ok = sorted((t for t in trials if t["status"] == "ok" and t.get("val_accuracy") is not None), key=sort_key)[:max(top, 1)]
    if not ok:
        raise GraphcError("--refine: the search has no trained trial to refine around")
    out = []
    for d in dims:
        vals = [t["values"][d.path] for t in ok]
        if d.kind in ("grid", "choice"):
            kept = [v for v in d.args if v in vals]
            out.append(Dim(d.path, d.kind, kept or vals[:1]))
            continue
        lo0, hi0 = d.args
        log = d.kind == "loguniform"
        f = math.log if log else float
        g = math.exp if log else float
        a, b = f(min(vals)), f(max(vals))
        margin = max(0.25 * (b - a), 0.1 * (f(hi0) - f(lo0)))
        lo, hi = g(a - margin), g(b + margin)
        if d.kind == "int":
            lo, hi = max(1, math.floor(lo)) if lo0 >= 1 else math.floor(lo), math.ceil(hi)
            out.append(Dim(d.path, "int", [int(lo), int(max(hi, lo))]))
        else:
            out.append(Dim(d.path, d.kind, [_round(lo), _round(hi)]))
    return out


# --- the command line ---------------------------------------------------------------------------------

TUNE_EPILOG = """exit codes: 0 the search finished (every trial trained, rejected before training, or failed with a
stated reason) · 1 invalid spec, search space or option · 2 invalid command line · 130 interrupted: continue with
--resume DIR"""


def _amount(text: str) -> int:
    import argparse

    try:
        return parse_amount(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_tune(args) -> int:
    if sum(x is not None for x in (args.resume, args.refine)) > 1:
        raise GraphcError("use --resume DIR or --refine DIR, not both")
    if args.workers and args.scheduler:
        raise GraphcError("use --workers N (an embedded cluster) or --scheduler ADDRESS (an existing one), not both")
    return tune(TuneOptions(spec=args.spec, grid=args.grid or [], random=args.random or [], space=args.space,
                            trials=args.trials, seed=args.seed, sets=args.set or [],
                            budgets=Budgets(args.max_params, args.max_macs, args.max_memory), workers=args.workers,
                            scheduler=args.scheduler, out=args.out, resume=args.resume, refine=args.refine, top=args.top,
                            retries=args.retries))


def add_subcommand(sub, epilog: str) -> None:
    """Add ``graphc tune`` to the CLI's subparsers."""
    from .training import _at_least_one

    t = sub.add_parser(
        "tune", help="hyperparameter search on Dask: grid/random over any spec value, invalid candidates rejected "
                     "before training", epilog=TUNE_EPILOG,
        description="Search over spec values named by --set's dotted paths. Every candidate is compiled first; one "
                    "whose shapes fail or that exceeds --max-params/--max-macs/--max-memory is rejected with the "
                    "values, the layer and the message. The others train in parallel on Dask (an embedded "
                    "LocalCluster, or --scheduler). Writes DIR/tune.json, results.csv, results.json (sorted by "
                    "validation accuracy), best.yaml (a complete spec for graphc train), tune.png and trials/<id>/.")
    t.add_argument("spec", nargs="?", help="the spec file (YAML) with a train: section")
    t.add_argument("--grid", action="append", metavar="PATH=V1,V2,...",
                   help="grid dimension (repeatable; dimensions are crossed): --grid layers.fc1.units=50,100,200")
    t.add_argument("--random", action="append", metavar="PATH=DIST",
                   help="random dimension (repeatable): uniform(a,b), loguniform(a,b), int(a,b) (both ends included) or "
                        "choice(a,b,...): --random train.lr=loguniform(1e-4,1e-1)")
    t.add_argument("--space", metavar="FILE",
                   help="a YAML search space: tune: {grid: {PATH: [values]}, random: {PATH: 'loguniform(a,b)'}, "
                        "trials: N, seed: S} (combined with --grid/--random)")
    t.add_argument("--trials", type=_at_least_one, metavar="N",
                   help="random draws per grid point (default 8; the grid alone runs once per point)")
    t.add_argument("--seed", type=int, metavar="S", help="seed of the random draws (default 0)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a fixed override for every trial, as graphc train --set (repeatable): --set train.epochs=20")
    t.add_argument("--max-params", type=_amount, metavar="N", help="reject candidates with more parameters (e.g. 500k, 2M)")
    t.add_argument("--max-macs", type=_amount, metavar="N", help="reject candidates with more MACs per example (e.g. 10M)")
    t.add_argument("--max-memory", type=_amount, metavar="BYTES",
                   help="reject candidates needing more training memory: params×4 + activation bytes per example × "
                        "batch size (e.g. 64MB)")
    t.add_argument("--workers", type=_at_least_one, metavar="N",
                   help="worker processes of the embedded LocalCluster (default: one per CPU), one thread each")
    t.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="use an existing Dask cluster (started with 'dask scheduler' and 'dask worker ADDRESS'); the spec "
                        "and the output directory must be at the same paths on every worker (a shared filesystem)")
    t.add_argument("--out", metavar="DIR", help="the output directory (default: runs/tune-<spec name>, numbered if taken)")
    t.add_argument("--resume", metavar="DIR", help="continue the search in DIR: finished and rejected trials are kept, "
                                                   "the rest (unfinished or failed) are trained")
    t.add_argument("--refine", metavar="DIR", help="coarse to fine: a new search around the --top best trials of DIR "
                                                   "(numeric ranges narrowed, log-uniform ones in log space)")
    t.add_argument("--top", type=_at_least_one, default=3, metavar="K", help="trials that --refine narrows around (default 3)")
    t.add_argument("--retries", type=int, default=2, metavar="N",
                   help="resubmissions of a trial whose task raised (default 2); a trial whose worker died is "
                        "rescheduled by Dask up to distributed.scheduler.allowed-failures times")
    t.set_defaults(run=cmd_tune)


__all__ = ["Budgets", "Dim", "TuneOptions", "expand", "parse_grid", "parse_random", "prefilter", "refine_space",
           "run_trial", "tune"]
