"""The training loop of ``graphc train``: epochs of shuffled mini-batches through one compiled
training step, evaluation in inference mode, model selection, early stopping, checkpoints.

Run directory (``--out``)::

    run.json            how the run was started: spec path, --set values, --overfit, backend, hashes, the data
                        input, init_params (--params: path and SHA-256), continued (resumes that changed epochs)
    spec.yaml           a copy of the spec file as it was at the start (model.onnx: the ONNX model trained)
    spec.json           the effective spec (after --set and overrides), to name what changed on --resume
    normalization.npz   mean and scale fitted on the training split: x' = (x − mean) / scale
    metrics.csv         one row per epoch: epoch, lr, loss, train_accuracy, val_loss, val_accuracy, seconds,
                        examples_per_second (training steps only), eta_seconds (the run's remaining epochs
                        at the mean epoch time so far; an upper bound under early stopping)
    metrics.json        the same rows under "epochs", plus the summary (test_accuracy, best_val_accuracy, …)
    curves.png          loss and accuracy per epoch
    best.npz            parameters (and batchnorm running statistics) of the best epoch on the monitored metric
    final.npz           parameters at the end of the run
    checkpoints/        the two newest checkpoints (see graphc.train.checkpoint)

Reproducibility: every random choice (initial parameters, example order, dropout masks) comes from
``train.seed``; the order and masks come from one generator whose state is checkpointed, so a
resumed run takes exactly the steps the uninterrupted run would have taken.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backends.engines import ENGINES, accuracy_fn, choose_backend, engine_line, loss_parts
from ..backends.run import bind_sizes, draw_masks
from ..errors import EXIT_CHECK_FAILED, EXIT_INTERRUPTED, GraphcError, MissingInput, did_you_mean
from ..files import make_directory, safe_component, save_arrays, write_atomic
from ..finite import dumps as finite_dumps
from ..version import __version__
from . import checkpoint
from .data import fingerprint, prepare
from ..backends.trained import run_params  # noqa: F401  (graphc.train.loop.run_params, as before)

CSV_COLUMNS = ("epoch", "lr", "loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "examples_per_second", "eta_seconds")
#: The columns that measure time, so differ between two runs of the same training.
TIMING_COLUMNS = ("seconds", "examples_per_second", "eta_seconds")
LOG_FORMATS = ("text", "jsonl")


@dataclass
class Options:
    spec: str | None
    out: str | None = None
    backend: str | None = None
    device: str = "auto"
    sets: list[str] = field(default_factory=list)
    overfit: int | None = None
    resume: str | None = None
    checkpoint_every: int = 0
    params: str | None = None  # start from these trained weights (a run directory or an .npz): fine-tuning
    progress: bool | None = None  # None: when stderr is a terminal
    log_format: str = "text"  # or "jsonl": one JSON object per step and per epoch on stdout, then the summary
    max_memory: int | None = None  # bytes; None: ir.memory.default_max_memory()
    allow_nonfinite: bool = False  # accept NaN/Inf in the training and test arrays


class NonFinite(Exception):
    pass


def learning_rate(t, epoch: int) -> float:
    d = t.lr_decay
    if d.kind == "step":
        return t.lr * d.rate ** (epoch // d.every)
    if d.kind == "exponential":
        return t.lr * d.rate ** epoch
    if d.kind == "inverse_time":
        return t.lr / (1.0 + d.rate * epoch)
    return t.lr


def starting_params(graph, t) -> dict[str, np.ndarray]:
    """The spec's initial parameters (seed ``train.seed``), with ``train.init`` overrides applied."""
    from ..ir.params import initial_params, initial_value, param_nodes
    from ..spec.models import InitDecl

    params = initial_params(graph, t.seed)
    nodes = param_nodes(graph)
    for pattern, init in t.init.items():
        matched = [n for n in nodes if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise GraphcError(f"train.init: '{pattern}' matches no parameter", hint=did_you_mean(pattern, nodes, "parameter"))
        decl = InitDecl(kind=init) if isinstance(init, str) else init
        for n in matched:
            params[n] = initial_value(n, tuple(nodes[n]["op"].shape), decl, t.seed)
    return params


def fmt_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def strict_json(obj: dict) -> str:
    """One line of strict JSON: a non-finite float becomes null (JSON has no NaN or Infinity)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in obj.items()}
    return json.dumps(clean, allow_nan=False, separators=(",", ":"))


@dataclass
class Speed:
    """Throughput and time left: ``rate = examples / seconds`` of this epoch's steps so far; the epoch's
    ETA is its remaining examples at that rate; the run's adds every remaining epoch at the mean epoch
    time so far (evaluation included), or at ``n / rate`` before the first epoch has ended."""

    examples_per_second: float | None
    eta_epoch_seconds: float | None
    eta_run_seconds: float | None


def speed(done: int, seconds: float, n: int, epochs_left: int, mean_epoch: float | None) -> Speed:
    rate = done / seconds if seconds > 0 and done else None
    if rate is None:
        return Speed(None, None, None)
    eta_epoch = max(n - done, 0) / rate
    per_epoch = mean_epoch if mean_epoch is not None else n / rate
    return Speed(rate, eta_epoch, eta_epoch + epochs_left * per_epoch)


class Progress:
    """A one-line progress bar on stderr (only when asked: on a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.last = 0.0

    def update(self, epoch: int, epochs: int, done: int, total: int, loss: float, pace: Speed | None = None) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        width = 30
        fill = int(width * done / max(total, 1))
        rate = ""
        if pace is not None and pace.examples_per_second is not None:
            rate = (f" {pace.examples_per_second:,.0f} ex/s  ETA epoch {fmt_duration(pace.eta_epoch_seconds)}"
                    f" run {fmt_duration(pace.eta_run_seconds)}")
        sys.stderr.write(f"\repoch {epoch + 1}/{epochs} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} loss {loss:.4f}{rate}\033[K")
        sys.stderr.flush()

    def end(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


class Trainer:
    def __init__(self, opts: Options):
        self.started = time.monotonic()
        self.opts = opts
        self.interrupted = False
        self.lock: checkpoint.RunLock | None = None
        try:
            self._setup()
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # --- setup -------------------------------------------------------------------------------

    def _setup(self) -> None:
        from ..ir.autodiff import training_graph
        from ..ir.passes import optimize
        from .training_spec import canonical, core_hash, data_inputs, load_for_training, spec_hash
        from .optimizers import Hyper, initial_state, with_optimizer

        o = self.opts
        stored = None
        if o.resume:
            self.run_dir = Path(o.resume)
            if not self.run_dir.is_dir():
                raise MissingInput(f"--resume {self.run_dir}: not a graphc run directory "
                                   f"({'no such directory' if not self.run_dir.exists() else 'not a directory'})")
            self.lock = checkpoint.RunLock(self.run_dir).acquire()
            stored = self._read_run_json()
            o.spec = o.spec or stored["spec"]
            o.sets = list(stored.get("sets", [])) + list(o.sets)
            if o.overfit is None:
                o.overfit = stored.get("overfit")
            o.backend = o.backend or stored.get("backend", "numpy")
            if not o.checkpoint_every:
                o.checkpoint_every = stored.get("checkpoint_every", 0)
        o.backend = choose_backend(o.backend, o.device)  # --device cuda selects onnxruntime, or is an error
        graph, t, data, blocks = load_for_training(o.spec, o.sets, overfit=o.overfit is not None)
        self.graph, self.t, self.data = graph, t, data
        self.hash = spec_hash(data, blocks, {"overfit": o.overfit})
        self.core_hash = core_hash(data, blocks, {"overfit": o.overfit})
        self.data_input, self.label_input = data_inputs(graph)
        _, loss_op, _ = loss_parts(graph)
        self.correct = accuracy_fn(graph.nodes[loss_op]["op"].kind)
        self.splits, self.norm = prepare(t, graph, self.data_input, self.label_input, Path(o.spec).parent, o.overfit,
                                          o.allow_nonfinite, o.max_memory)
        if len(self.splits["train"]) == 0:
            raise GraphcError("the training split is empty")
        self.data_hash = fingerprint(self.splits)
        # symbolic sizes (an input [N, 3, H, W]) bound from the data: the gradient ops hold sizes
        graph = self.graph = bind_sizes(graph, arrays={self.data_input: self.splits["train"].x}, source=f"train.data ({t.data})")
        training, _ = optimize(training_graph(graph))
        # neither engine reads the gradients, so an update may take a dense weight's gradient product whole
        self.step_graph = with_optimizer(training, t.optimizer, Hyper(momentum=t.momentum, rho=t.rho, beta1=t.beta1,
                                                                      beta2=t.beta2, eps=t.eps), grads=False)
        self.masks = [n for n, a in self.step_graph.nodes(data=True) if a["op"].kind == "random_mask"]
        self.batch_dims = {d: None for d in graph.nodes[self.data_input]["type"].shape if not isinstance(d, int)}
        self._check_memory(graph)
        self.engine = ENGINES[o.backend](self.step_graph, graph, o.device)
        print(engine_line(o.backend, self.engine.provider, o.device), file=sys.stderr)
        self.params = starting_params(graph, t)
        self.init_params = None
        if o.params:
            if o.resume:
                raise GraphcError("--params starts a new run from trained weights; --resume continues a run from its checkpoint",
                                  hint="use one of them")
            self._load_init_params(o.params)
        self.state = initial_state(self.step_graph)
        self.epochs = t.overfit_epochs if o.overfit is not None else t.epochs
        has_val = len(self.splits["val"]) > 0
        metric = t.monitor.removeprefix("val_")
        if self.correct is None and metric == "accuracy":
            metric = "loss"
        self.monitor = f"{'val' if has_val else 'train'}_{metric}"
        self.maximize = metric == "accuracy"
        self.rng = np.random.default_rng(t.seed)
        self.order = np.arange(len(self.splits["train"]))
        self.epoch = self.batch = self.step_count = 0
        self.history: list[dict] = []
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.loss_sum, self.loss_count = 0.0, 0
        self.elapsed_before = 0.0
        self.done = False
        self.stopped = None
        if o.resume:
            self._restore(stored)
        else:
            self._create_run_dir(canonical)

    def _check_memory(self, graph) -> None:
        """One training step at ``batch_size`` and one evaluation batch at ``eval_batch_size`` (each at
        most the largest split) must fit in ``--max-memory``, before parameters or engines exist."""
        from ..ir.memory import default_max_memory, require_memory

        limit = self.opts.max_memory if self.opts.max_memory is not None else default_max_memory()
        largest = max(len(split) for split in self.splits.values())
        step = dict.fromkeys(self.batch_dims, min(self.t.batch_size, len(self.splits["train"])))
        require_memory(self.step_graph, step, limit, f"train (a step at batch_size {self.t.batch_size})")
        evaluation = dict.fromkeys(self.batch_dims, min(self.t.eval_batch_size, largest))
        require_memory(graph, evaluation, limit, f"train (an evaluation at eval_batch_size {self.t.eval_batch_size})")

    def _load_init_params(self, arg: str) -> None:
        """Fine-tuning: the given parameters replace the initial ones (shapes checked against the spec)."""
        from ..backends.trained import file_sha256, load_model_params, run_params
        from ..ir.params import initial_params

        file = run_params(arg)
        given, _ = load_model_params(self.graph, file, f"--params {arg}")  # a carried normalisation is re-fitted here
        checked = initial_params(self.graph, self.t.seed, given, source=f"--params {arg}")
        self.params.update({k: checked[k] for k in given})
        self.init_params = {"path": str(file.resolve()), "sha256": file_sha256(file), "loaded": sorted(given),
                            "initialised": sorted(set(self.params) - set(given))}
        print(f"graphc: starting from {file}: {len(given)} of {len(self.params)} parameters"
              + (f" (initialised from the spec: {', '.join(self.init_params['initialised'])})" if self.init_params["initialised"] else ""),
              file=sys.stderr)

    def _read_run_json(self) -> dict:
        path = self.run_dir / "run.json"
        if not path.is_file():
            raise MissingInput(f"--resume {self.run_dir}: not a graphc run directory (no run.json)")
        try:
            stored = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise GraphcError(f"--resume {self.run_dir}: cannot read run.json: {e}") from None
        return checked_run_json(stored, path)

    def _create_run_dir(self, canonical) -> None:
        o = self.opts
        if o.out:
            self.run_dir = Path(o.out)
            if (self.run_dir / "run.json").exists():
                raise GraphcError(f"--out {self.run_dir} already holds a training run",
                                  hint=f"continue it with --resume {self.run_dir}, or choose another --out")
            self._lock_new(self.run_dir)
            if (self.run_dir / "run.json").exists():  # another process started a run here meanwhile
                raise GraphcError(f"--out {self.run_dir} already holds a training run",
                                  hint=f"continue it with --resume {self.run_dir}, or choose another --out")
        else:
            # the spec's name is user text: one safe path component under runs/ (no '..', '/', control characters)
            base = Path("runs") / safe_component(self.graph.graph.get("name") or Path(o.spec).stem)
            self.run_dir, k = base, 1
            while True:
                if not (self.run_dir / "run.json").exists():
                    self._lock_new(self.run_dir)
                    if not (self.run_dir / "run.json").exists():
                        break
                    self.release()
                k += 1
                self.run_dir = base.with_name(f"{base.name}-{k}")
        info = {"graphc_version": __version__, "spec": str(Path(o.spec).resolve()), "sets": o.sets, "overfit": o.overfit,
                "backend": o.backend, "device": o.device, "provider": self.engine.provider, "checkpoint_every": o.checkpoint_every,
                "spec_hash": self.hash, "data_hash": self.data_hash, "data_input": self.data_input, "init_params": self.init_params,
                "examples": {p: len(s) for p, s in self.splits.items()}, "command": sys.argv}
        from ..onnx_import import is_onnx_file

        # a copy of the source: the spec file, or the ONNX model it was imported from
        write_atomic(self.run_dir / ("model.onnx" if is_onnx_file(o.spec) else "spec.yaml"), Path(o.spec).read_bytes())
        write_atomic(self.run_dir / "spec.json", json.dumps(json.loads(canonical(self.data)), indent=1) + "\n")
        self.norm.save(self.run_dir / "normalization.npz")
        write_atomic(self.run_dir / "run.json", finite_dumps(info, indent=2) + "\n")
        self._checkpoint()  # step 0: there is always a good checkpoint to go back to

    def _lock_new(self, run_dir: Path) -> None:
        make_directory(run_dir, "run directory")
        self.lock = checkpoint.RunLock(run_dir).acquire()

    def _restore(self, stored: dict) -> None:
        from .training_spec import RESUMABLE, changed_paths, resumable

        path, (params, state, order, meta) = checkpoint.newest_valid(self.run_dir)
        continued: list[str] = []
        if meta["spec_hash"] != self.hash:
            try:
                old = json.loads((self.run_dir / "spec.json").read_text())
                changed = changed_paths(old, json.loads(json.dumps(self.data, default=str)))
            except (OSError, json.JSONDecodeError):
                changed = []
            if meta.get("core_hash") != self.core_hash:
                refused = [c for c in changed if not resumable(c)] or changed
                shown = ", ".join(refused[:8]) + (", …" if len(refused) > 8 else "") if refused else "the blocks it includes or --overfit"
                raise GraphcError(f"--resume {self.run_dir}: the spec has changed since this run started ({shown}); "
                                  f"resuming would not continue the same training",
                                  hint=f"only {' and '.join(RESUMABLE)} may change on --resume; restore the rest (a copy of the "
                                       "spec is in spec.yaml of the run directory), start a new run with --out, or fine-tune "
                                       f"with: graphc train SPEC --params {self.run_dir} --out NEW_RUN")
            continued = changed or list(RESUMABLE)
            if self.opts.overfit is None and self.epochs < meta["epoch"]:
                raise GraphcError(f"--resume {self.run_dir}: train.epochs is {self.epochs}, but the run has already trained "
                                  f"{meta['epoch']} epochs", hint=f"set train.epochs to {meta['epoch']} or more")
        if meta["data_hash"] != self.data_hash:
            raise GraphcError(f"--resume {self.run_dir}: the training data differ from the run's (train.data {self.t.data})",
                              hint="restore the data file, or start a new run with --out")
        self.params.update(params)
        self.state.update(state)
        self.order = order
        self.epoch, self.batch, self.step_count = meta["epoch"], meta["batch"], meta["step"]
        self.rng.bit_generator.state = meta["rng"]
        self.history = meta["history"]
        self.best_value, self.best_epoch, self.bad_epochs = meta["best_value"], meta["best_epoch"], meta["bad_epochs"]
        self.loss_sum, self.loss_count = meta["loss_sum"], meta["loss_count"]
        self.elapsed_before = meta["elapsed"]
        self.done, self.stopped = meta["done"], meta.get("stopped")
        self.resumed_from = path
        if continued:
            self._continue(stored, continued)
        print(f"graphc: resuming {self.run_dir} from {path.name} (epoch {self.epoch + 1}, batch {self.batch}, step {self.step_count})",
              file=sys.stderr)

    def _continue(self, stored: dict, changed: list[str]) -> None:
        """Continuing with more epochs or another schedule: a finished run reopens, and the run
        directory's spec.json and run.json take the new settings (a later --resume compares with them)."""
        from .training_spec import canonical

        if self.done and self.stopped == "completed" and self.epoch < self.epochs:
            self.done, self.stopped = False, None
        info = {**stored, "sets": self.opts.sets, "spec_hash": self.hash,
                "continued": [*stored.get("continued", []), {"at_epoch": self.epoch, "at_step": self.step_count, "changed": changed,
                                                             "command": sys.argv}]}
        write_atomic(self.run_dir / "spec.json", json.dumps(json.loads(canonical(self.data)), indent=1) + "\n")
        write_atomic(self.run_dir / "run.json", json.dumps(info, indent=2) + "\n")
        state = (f"continues to epoch {self.epochs}" if not self.done
                 else f"stays finished (it stopped: {self.stopped}; raising train.epochs reopens only a completed run)")
        print(f"graphc: {self.run_dir}: changed on resume: {', '.join(changed)}; the run {state}", file=sys.stderr)

    # --- checkpoints and files -----------------------------------------------------------------

    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def _checkpoint(self) -> Path:
        for k, v in self.params.items():
            if not np.all(np.isfinite(v)):
                raise NonFinite(f"parameter '{k}' became non-finite after step {self.step_count}")
        meta = {"spec_hash": self.hash, "core_hash": self.core_hash, "data_hash": self.data_hash, "epoch": self.epoch, "batch": self.batch,
                "step": self.step_count, "rng": self.rng.bit_generator.state, "history": self.history,
                "best_value": self.best_value, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "loss_sum": self.loss_sum, "loss_count": self.loss_count, "elapsed": self._elapsed(), "done": self.done,
                "stopped": self.stopped}
        return checkpoint.save(self.run_dir, self.params, self.state, self.order, meta)

    def _write_metrics(self, summary: dict | None = None) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        for row in self.history:
            w.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS})
        write_atomic(self.run_dir / "metrics.csv", buf.getvalue())
        doc = {"spec": self.graph.graph.get("name"), "backend": self.opts.backend, "provider": self.engine.provider,
               "monitor": self.monitor, "epochs_run": len(self.history), "steps": self.step_count,
               "best_epoch": self.best_epoch, **self._best_values(), "examples": {p: len(s) for p, s in self.splits.items()},
               **(summary or {}), "epochs": self.history}
        write_atomic(self.run_dir / "metrics.json", finite_dumps(doc, indent=2) + "\n")  # strict: null for NaN

    def _best_values(self) -> dict:
        row = next((r for r in self.history if r["epoch"] == self.best_epoch), None)
        if row is None:
            return {"best_val_accuracy": None, "best_val_loss": None}
        return {"best_val_accuracy": row.get("val_accuracy") if row.get("val_accuracy") is not None else row.get("train_accuracy"),
                "best_val_loss": row.get("val_loss") if row.get("val_loss") is not None else row.get("train_loss")}

    # --- evaluation ----------------------------------------------------------------------------

    def evaluate(self, part: str, params: dict | None = None) -> tuple[float | None, float | None]:
        """(mean loss, accuracy) over a split in inference mode; (None, None) for an empty split."""
        s = self.splits[part]
        if len(s) == 0:
            return None, None
        params = params or self.params
        total, correct, checked, n = 0.0, 0, 0, len(s)
        size = self.t.eval_batch_size
        for i in range(0, n, size):
            x, y = s.x[i:i + size], s.y[i:i + size]
            loss, pred = self.engine.evaluate({self.data_input: x, self.label_input: y, **params})
            total += loss * len(x)
            if self.correct is not None:
                hits = self.correct(pred, y)
                correct, checked = correct + int(np.count_nonzero(hits)), checked + hits.size
        accuracy = correct / checked if self.correct is not None else None
        return total / n, accuracy

    # --- the loop ------------------------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        if self.interrupted:  # a second Ctrl-C: stop now, the newest checkpoint stays
            raise KeyboardInterrupt
        self.interrupted = True

    def run(self) -> int:
        progress = Progress(self.opts.log_format == "text" and (sys.stderr.isatty() if self.opts.progress is None else self.opts.progress))
        # Ctrl-C/SIGTERM write a checkpoint; Python allows handlers on the main thread only (a Dask
        # worker runs graphc tune's trials on other threads, and owns its signals there)
        on_main = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)} if on_main else {}
        try:
            if not self.done:
                with np.errstate(all="ignore"):  # a diverging run is reported as such, not as NumPy warnings
                    self._loop(progress)
            if self.interrupted and not self.done:
                progress.end()
                path = self._checkpoint()
                self._write_metrics({"stopped": "interrupted", "wall_seconds": round(self._elapsed(), 3)})
                print(f"graphc: interrupted at epoch {self.epoch + 1}, batch {self.batch} (step {self.step_count}); checkpoint {path}\n"
                      f"graphc: continue with: graphc train --resume {self.run_dir}", file=sys.stderr)
                return EXIT_INTERRUPTED
        except NonFinite as e:
            progress.end()
            kept = checkpoint.listed(self.run_dir)
            self.stopped = f"non-finite: {e}"
            self._write_metrics({"stopped": self.stopped, "wall_seconds": round(self._elapsed(), 3)})
            self._write_curves()
            print(f"graphc: error: {e}; training stopped. The last good checkpoint is kept: "
                  f"{kept[0] if kept else '(none)'} — lower train.lr (now {self.t.lr:g}) or check the data", file=sys.stderr)
            return EXIT_CHECK_FAILED
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        return self._finish()

    def _loop(self, progress: Progress) -> None:
        t, o = self.t, self.opts
        x, y = self.splits["train"].x, self.splits["train"].y
        n, size = len(x), t.batch_size
        batches = math.ceil(n / size)
        values = {**self.params, **self.state}
        stats = set(self.state)
        while self.epoch < self.epochs:
            if self.batch == 0:
                self.order = self.rng.permutation(n) if t.shuffle else np.arange(n)
                self.loss_sum, self.loss_count = 0.0, 0
                self.epoch_started = time.monotonic()
            elif not hasattr(self, "epoch_started"):
                self.epoch_started = time.monotonic()
            # this session's share of the epoch (a resumed epoch counts from where it resumed)
            stepped, first_batch = 0, self.batch
            lr = learning_rate(t, self.epoch)
            values["lr"] = np.asarray(lr, np.float32)
            while self.batch < batches:
                idx = self.order[self.batch * size:(self.batch + 1) * size]
                values[self.data_input], values[self.label_input] = x[idx], y[idx]
                if self.masks:
                    sizes = {d: len(idx) for d in self.batch_dims}
                    values.update(draw_masks(self.step_graph, sizes, int(self.rng.integers(2**63))))
                loss, new = self.engine.step(values)
                if not math.isfinite(loss):
                    raise NonFinite(f"the loss is {loss} at epoch {self.epoch + 1}, batch {self.batch + 1} (step {self.step_count + 1})")
                values.update(new)
                for k, v in new.items():
                    (self.state if k in stats else self.params)[k] = v
                self.loss_sum += loss * len(idx)
                self.loss_count += len(idx)
                self.batch += 1
                self.step_count += 1
                stepped += len(idx)
                pace = self._speed(stepped, min(first_batch * size, n), n)
                progress.update(self.epoch, self.epochs, self.batch, batches, self.loss_sum / self.loss_count, pace)
                if o.log_format == "jsonl":
                    print(strict_json({"event": "step", "epoch": self.epoch + 1, "batch": self.batch, "batches": batches,
                                       "step": self.step_count, "loss": loss, "epoch_loss": self.loss_sum / self.loss_count,
                                       "lr": lr, **pace.__dict__}), flush=True)
                if self.interrupted:
                    return
                if o.checkpoint_every and self.step_count % o.checkpoint_every == 0 and self.batch < batches:
                    self._checkpoint()
            progress.end()
            self.train_pace = self._speed(stepped, min(first_batch * size, n), n)
            self._end_epoch(lr)
            if self.done or self.interrupted:
                return

    def _speed(self, stepped: int, before: int, n: int) -> Speed:
        """``stepped`` examples in this session's part of the epoch, which began after ``before``."""
        mean = sum(r["seconds"] for r in self.history) / len(self.history) if self.history else None
        pace = speed(stepped, time.monotonic() - self.epoch_started, n - before, self.epochs - self.epoch - 1, mean)
        return pace

    def _end_epoch(self, lr: float) -> None:
        train_loss, train_acc = self.evaluate("train")
        val_loss, val_acc = self.evaluate("val")
        row = {"epoch": self.epoch + 1, "lr": lr, "loss": self.loss_sum / max(self.loss_count, 1),
               "train_accuracy": train_acc, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_acc,
               "seconds": round(time.monotonic() - self.epoch_started, 4)}
        rate = self.train_pace.examples_per_second
        row["examples_per_second"] = None if rate is None else round(rate, 1)
        self.history.append(row)
        row["eta_seconds"] = round(sum(r["seconds"] for r in self.history) / len(self.history) * (self.epochs - self.epoch - 1), 2)
        # Accuracy ties (frequent on a small validation split) are broken by the lower loss.
        part = self.monitor.split("_")[0]
        key = [row[self.monitor], -row[f"{part}_loss"]] if self.maximize else [-row[self.monitor]]
        es = self.t.early_stopping if self.opts.overfit is None else None
        margin = es.min_delta if es else 0.0
        best = self.best_value
        if best is None or key > best:
            save_arrays(self.run_dir / "best.npz", self.params)
            self.best_epoch = row["epoch"]
        improved = best is None or key[0] > best[0] + margin or (margin == 0 and key > best)
        self.best_value = key if best is None or key > best else best
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        if self.opts.log_format == "jsonl":
            print(strict_json({"event": "epoch", **row}), flush=True)
        else:
            self._print_epoch(row)
        self.epoch += 1
        self.batch = 0
        if self.opts.overfit is not None and train_acc is not None and train_acc >= 1.0:
            self.done, self.stopped = True, "overfit_reached"
        elif es and self.bad_epochs >= es.patience:
            self.done, self.stopped = True, "early_stopping"
        elif self.epoch >= self.epochs:
            self.done, self.stopped = True, "completed"
        self._write_metrics()
        self._checkpoint()

    def _print_epoch(self, row: dict) -> None:
        def pct(v):
            return "-" if v is None else f"{100 * v:.2f}%"

        def num(v):
            return "-" if v is None else f"{v:.4f}"

        print(f"epoch {row['epoch']:>3}/{self.epochs}  loss {num(row['loss'])}  train acc {pct(row['train_accuracy'])}  "
              f"val loss {num(row['val_loss'])}  val acc {pct(row['val_accuracy'])}  lr {row['lr']:.3g}  {row['seconds']:.2f}s"
              + (f"  {row['examples_per_second']:,.0f} ex/s" if row.get("examples_per_second") else "")
              + (f"  ETA {fmt_duration(row['eta_seconds'])}" if row["epoch"] < self.epochs else ""),
              file=sys.stderr)

    def _finish(self) -> int:
        from ..files import load_arrays

        best = load_arrays(self.run_dir / "best.npz", "best.npz") if (self.run_dir / "best.npz").exists() else self.params
        test_loss, test_acc = self.evaluate("test", best)
        wall = self._elapsed()
        save_arrays(self.run_dir / "final.npz", self.params)
        summary = {"stopped": self.stopped, "test_accuracy": test_acc, "test_loss": test_loss, "wall_seconds": round(wall, 3)}
        if self.opts.overfit is not None:
            reached = bool(self.history and self.history[-1]["train_accuracy"] is not None and self.history[-1]["train_accuracy"] >= 1.0)
            summary["overfit"] = {"examples": self.opts.overfit, "reached_100_percent": reached,
                                  "train_accuracy": self.history[-1]["train_accuracy"] if self.history else None}
        self._write_metrics(summary)
        self._write_curves()
        name = self.graph.graph.get("name")
        best_row = self._best_values()
        if self.opts.log_format == "jsonl":
            print(strict_json({"event": "end", "spec": name, "epochs_run": len(self.history), "steps": self.step_count,
                               "backend": self.opts.backend, "provider": self.engine.provider, "best_epoch": self.best_epoch,
                               **best_row, **summary, "run_dir": str(self.run_dir)}), flush=True)
            return 0 if self.opts.overfit is None or summary["overfit"]["reached_100_percent"] else EXIT_CHECK_FAILED
        print(f"{name}: {len(self.history)} epochs, {self.step_count} steps in {wall:.2f} s on {self.opts.backend} "
              f"({self.engine.provider}); stopped: {self.stopped}")
        if best_row["best_val_accuracy"] is not None:
            print(f"best {self.monitor.split('_')[0]} accuracy {100 * best_row['best_val_accuracy']:.2f}% (epoch {self.best_epoch})")
        if test_acc is not None:
            print(f"test accuracy {100 * test_acc:.2f}%  test loss {test_loss:.4f}  ({len(self.splits['test'])} examples, best.npz)")
        elif test_loss is not None:
            print(f"test loss {test_loss:.4f}  ({len(self.splits['test'])} examples, best.npz)")
        print(f"run directory: {self.run_dir}")
        if self.opts.overfit is not None:
            o = summary["overfit"]
            if o["reached_100_percent"]:
                print(f"overfit: reached 100% training accuracy on {self.opts.overfit} examples in {len(self.history)} epochs")
                return 0
            acc = o["train_accuracy"]
            print(f"overfit: did NOT reach 100% training accuracy on {self.opts.overfit} examples in {len(self.history)} epochs "
                  f"(reached {100 * (acc or 0):.2f}%): check the learning rate, the initialisation and the gradients")
            return EXIT_CHECK_FAILED
        return 0

    def _write_curves(self) -> None:
        if not self.history:
            return
        from .curves import plot

        try:
            picture = plot(self.history, str(self.graph.graph.get("name")))
        except GraphcError as e:  # the run's results are written already: a missing picture does not fail it
            print(f"graphc: warning: curves.png not drawn: {'; '.join(str(d) for d in e.diagnostics)}", file=sys.stderr)
            return
        write_atomic(self.run_dir / "curves.png", picture)


def train(opts: Options) -> int:
    trainer = Trainer(opts)
    try:
        return trainer.run()
    finally:
        trainer.release()


#: run.json's fields that --resume reads, with their expected types and what they hold
_RUN_FIELDS = {"spec": ((str,), "the spec's path (a string)"), "sets": ((list,), "a list of --set strings"),
               "overfit": ((int, type(None)), "a whole number or null"), "backend": ((str, type(None)), "'numpy' or 'onnxruntime'"),
               "checkpoint_every": ((int, type(None)), "a whole number ≥ 0")}


def checked_run_json(stored, path: Path) -> dict:
    """run.json as read, its shape checked: a damaged or hand-edited file is a located error naming the
    field, not a TypeError later."""
    def kind(v) -> str:
        return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(v), "a number" if isinstance(v, (int, float)) else type(v).__name__)

    if not isinstance(stored, dict):
        raise GraphcError(f"{path}: run.json holds {kind(stored)}, expected an object with the run's settings",
                          hint="the file is damaged; start a new run with --out")
    if "spec" not in stored:
        raise GraphcError(f"{path}: run.json has no 'spec' field (the spec's path)", hint="the file is damaged; start a new run with --out")
    for name, (types, what) in _RUN_FIELDS.items():
        if name not in stored:
            continue
        value = stored[name]
        bad = not isinstance(value, types) or isinstance(value, bool)
        if name == "sets" and not bad:
            bad = not all(isinstance(v, str) for v in value)
        if name == "backend" and not bad:
            bad = value not in (None, "numpy", "onnxruntime")
        if name in ("overfit", "checkpoint_every") and not bad and value is not None:
            bad = value < (1 if name == "overfit" else 0)
        if bad:
            raise GraphcError(f"{path}: field '{name}' is {kind(value)} ({json.dumps(value)[:60]}), expected {what}",
                              hint="the file is damaged; restore it or start a new run with --out")
    return stored


__all__ = ["Options", "run_params", "train"]
