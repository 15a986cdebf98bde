"""Checkpoints of a training run: everything needed to continue it exactly.

One checkpoint is one ``.npz`` file ``RUN_DIR/checkpoints/ckpt-<step>.npz`` (``step``: optimiser steps
taken, 8 digits), written atomically (temporary file, then rename); the two newest are kept, so a
checkpoint that is damaged later still leaves the previous one. It holds:

- ``param/<name>``: every parameter, batchnorm running statistics included;
- ``state/…``: the optimiser state (``state/<param>/<slot>``, Adam's ``state/step``);
- ``order``: the current epoch's example order;
- ``meta``: UTF-8 JSON (as a uint8 array, so no pickles): format version, spec and data hashes, epoch
  and batch position, step, the random generator's state, the metrics of finished epochs, the
  running sums of the current epoch, model-selection and early-stopping state, elapsed seconds, and
  a SHA-256 of all the arrays above (a damaged file fails this check and is skipped with a warning).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from ..errors import CannotWrite, GraphcError, printable
from ..files import load_arrays, make_directory, process_alive, save_arrays

FORMAT = 1
KEEP = 2
_NAME = re.compile(r"^ckpt-(\d+)\.npz$")


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def listed(run_dir: Path) -> list[Path]:
    """Checkpoint files, newest (most steps) first."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def save(run_dir: Path, params: dict, state: dict, order: np.ndarray, meta: dict) -> Path:
    """Write a checkpoint atomically and keep only the :data:`KEEP` newest; returns its path."""
    arrays = {f"param/{k}": np.asarray(v) for k, v in params.items()}
    arrays.update({k: np.asarray(v) for k, v in state.items()})
    arrays["order"] = np.asarray(order, np.int64)
    meta = {**meta, "format": FORMAT, "sha256": _digest(arrays)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    d = make_directory(checkpoint_dir(run_dir), "checkpoint directory")
    path = d / f"ckpt-{meta['step']:08d}.npz"
    save_arrays(path, arrays)
    for old in listed(run_dir)[KEEP:]:
        old.unlink(missing_ok=True)
    return path


def read(path: Path) -> tuple[dict, dict, np.ndarray, dict]:
    """(params, optimiser state, order, meta) of one checkpoint; a damaged file is a GraphcError."""
    arrays = load_arrays(path, "checkpoint")
    if "meta" not in arrays or "order" not in arrays:
        raise GraphcError(f"{path} is not a graphc checkpoint (no meta)")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GraphcError(f"{path}: unreadable metadata ({e})") from None
    if meta.get("format") != FORMAT:
        raise GraphcError(f"{path}: checkpoint format {meta.get('format')} (this graphc reads {FORMAT})")
    if _digest(arrays) != meta.get("sha256"):
        raise GraphcError(f"{path}: contents do not match their checksum (damaged)")
    params = {k.removeprefix("param/"): v for k, v in arrays.items() if k.startswith("param/")}
    state = {k: v for k, v in arrays.items() if k.startswith("state/")}
    return params, state, arrays["order"], meta


def newest_valid(run_dir: Path, warn=None) -> tuple[Path, tuple]:
    """The newest checkpoint that reads and checks; each damaged newer one is skipped with a warning."""
    warn = warn or (lambda text: print(f"graphc: warning: {text}", file=sys.stderr))
    paths = listed(run_dir)
    if not paths:
        raise GraphcError(f"{run_dir} has no checkpoints to resume from ({checkpoint_dir(run_dir)} is empty or missing)")
    problems = []
    for i, path in enumerate(paths):
        try:
            loaded = read(path)
        except GraphcError as e:
            problems.append(str(e.diagnostics[0].message))
            nxt = paths[i + 1].name if i + 1 < len(paths) else None
            warn(f"checkpoint {path.name} is unusable: {e.diagnostics[0].message}"
                 + (f"; falling back to {nxt}" if nxt else ""))
            continue
        return path, loaded
    raise GraphcError(f"no usable checkpoint in {checkpoint_dir(run_dir)}: " + "; ".join(problems))


LOCK = ".lock"


class RunLock:
    """``RUN_DIR/.lock``, created with ``O_CREAT | O_EXCL`` and holding the owner's pid: one process
    per run directory (two ``train --resume RUN`` at once would interleave checkpoints). A lock whose
    pid is no longer running (a killed process) is reclaimed, and said so."""

    def __init__(self, run_dir: Path, warn=None):
        self.path = Path(run_dir) / LOCK
        self.warn = warn or (lambda text: print(f"graphc: warning: {text}", file=sys.stderr))
        self.held = False

    def acquire(self) -> "RunLock":
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None and self._age() < 10:  # just created, its pid not yet written
                    raise CannotWrite(f"run directory {printable(self.path.parent)} is being locked by another process "
                                      f"(lock file {printable(self.path)})", hint="wait for that run to finish")
                if owner is not None and owner != os.getpid() and process_alive(owner):
                    raise CannotWrite(f"run directory {printable(self.path.parent)} is in use by process {owner} "
                                      f"(lock file {printable(self.path)})",
                                      hint="wait for that run to finish; remove the lock file only if that process is not graphc")
                self.warn(f"reclaiming the stale lock {printable(self.path)} of process "
                          f"{owner if owner is not None else '(unreadable)'}, which is no longer running")
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            except OSError as e:
                raise CannotWrite(f"cannot create the lock file {printable(self.path)}: {e.strerror or e}") from None
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            self.held = True
            return self
        raise CannotWrite(f"cannot take the lock {printable(self.path)}: another process keeps taking it")

    def _age(self) -> float:
        import time

        try:
            return time.time() - self.path.stat().st_mtime
        except OSError:
            return float("inf")

    def _owner(self) -> int | None:
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self.held and self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False
