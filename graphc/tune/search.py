"""``graphc tune``: hyperparameter search on Dask, with every candidate compiled before it is trained.

A search space names spec values by the dotted paths of ``graphc train --set`` (``train.lr``,
``layers.fc1.units``, ``loss.l2``, …). Grid dimensions (``--grid path=v1,v2``) are crossed; random
dimensions (``--random path=loguniform(1e-4,1e-1)``; also ``uniform(a,b)``, ``int(a,b)`` with both ends
included, ``choice(a,b,c)``) are sampled ``--trials`` times per grid point from ``--seed``.

Pipeline (each stage a plain function, each in its own module of this package)::

    space.expand(dims, trials, seed)   the candidates: one {path: value} mapping each
    prefilter.prefilter(...)           load + validate + build the graph with the candidate's --set values,
                                       and check --max-params/--max-macs/--max-memory: a candidate that
                                       fails is "rejected" with the values, the layer and the message
    trials.run_trial(...)              (on a Dask worker) graphc.train.loop.train into OUT/trials/<id>/
    trials.train_pending(search, ...)  submit every pending trial, collect them with as_completed,
                                       persisting OUT/tune.json atomically after each result (store)

Output directory (``--out``)::

    tune.json       the search: spec, fixed --set values, space, seed, budgets and every trial with its
                    status (pending, ok, rejected, failed) and results — what --resume and --refine read
    results.csv     one row per trial, sorted by the validation metric (rejected and failed last)
    results.json    the same rows
    best.yaml       the best trial's complete spec (the search values applied): graphc train accepts it
    tune.png        the validation metric against each searched value (log axes for log-uniform ones)
    trials/<id>/    each trained trial's run directory (metrics, curves, best.npz, train.log)

The memory budget is explained in prefilter.py, retries of dead workers in trials.py.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GraphcError, MissingInput
from .plot import write_plot
from .prefilter import Budgets, prefilter
from .trials import say, train_pending
from .space import Dim, as_yaml, expand, has_tune_section, parse_grid, parse_random, round_sig, sets_of, space_from_file, values_text
from .store import STATE, Search, read_state, sort_key


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
    backend: str | None = None  # the trials' training backend (None: graphc train's default)
    progress: bool = True
    progress_every: float = 1.0  # seconds between the progress line's reads of the running trials
    client: Any = None  # an existing dask.distributed.Client (Python API; tests share one cluster)
    crash_once: dict[str, str] = field(default_factory=dict)  # trial id -> marker file (tests: kill the worker once)


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


def plan(opts: TuneOptions) -> tuple[Path, dict]:
    """A new search's output directory and state: the space expanded, every candidate pre-filtered."""
    if opts.refine:
        old = read_state(opts.refine, "--refine")
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
            raise MissingInput(f"no such spec file: {opts.spec}")
        spec, fixed = str(Path(opts.spec).resolve()), list(opts.sets)
        source = opts.space or (opts.spec if has_tune_section(opts.spec) else None)
        dims, file_extra = space_from_file(source) if source else ([], {})
        dims += [parse_grid(g) for g in opts.grid] + [parse_random(r) for r in opts.random]
        if not dims:
            raise GraphcError("the search space is empty",
                              hint="add --grid PATH=v1,v2 or --random PATH=loguniform(a,b) (or --space FILE)")
        trials = opts.trials or file_extra.get("trials") or 8
        seed = opts.seed if opts.seed is not None else int(file_extra.get("seed", 0))
        out = _new_out(spec, opts.out)
        extra = {}
    from ..spec.overrides import apply_set
    from ..spec.safe_yaml import load_yaml_file

    probe = load_yaml_file(spec)
    for s in fixed:
        apply_set(probe, s)
    for d in dims:  # a path that the spec does not have is an error of the command line, not of one trial
        apply_set(probe, f"{d.path}={as_yaml(d.args[0])}")
    cands = expand(dims, trials, seed)
    budgets = opts.budgets
    state = {"graphc_tune": 1, "uid": os.urandom(4).hex(), "spec": spec, "name": Path(spec).stem, "sets": fixed,
             "dims": [d.to_json() for d in dims], "trials_per_point": trials, "seed": seed,
             "budgets": {"max_params": budgets.max_params, "max_macs": budgets.max_macs, "max_memory": budgets.max_memory},
             "command": sys.argv, "backend": opts.backend, **extra, "trials": []}
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
        state = read_state(opts.resume, "--resume")
        state["uid"] = os.urandom(4).hex()
    else:
        out, state = plan(opts)
        out.mkdir(parents=True, exist_ok=True)
    if opts.resume and opts.backend:
        state["backend"] = opts.backend
    (out / "trials").mkdir(parents=True, exist_ok=True)
    search = Search(out, state)
    search.save()  # the trial list is on disk before anything is trained
    rejected = [t for t in search.trials if t["status"] == "rejected"]
    if rejected and not opts.resume:
        say(opts, f"graphc tune: {len(rejected)} of {len(search.trials)} candidates rejected before training:")
        for t in rejected:
            say(opts, f"  {t['id']} {t['reason']}")
    try:
        with _sigterm_interrupts():
            code = train_pending(search, opts)
    except KeyboardInterrupt:
        search.save()
        finished = sum(t["status"] in ("ok", "rejected", "failed") for t in search.trials)
        print(f"graphc tune: interrupted with {finished} of {len(search.trials)} trials finished; the search is saved in {out}\n"
              f"graphc tune: continue with: graphc tune --resume {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    best = search.write_best()
    png = write_plot(search)
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


EXIT_INTERRUPTED = 130


@contextmanager
def _sigterm_interrupts():
    """SIGTERM stops the search as Ctrl-C does (KeyboardInterrupt), so both print the --resume line;
    handlers can be set on the main thread only (the Python API may run a search elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
            out.append(Dim(d.path, d.kind, [round_sig(lo), round_sig(hi)]))
    return out
