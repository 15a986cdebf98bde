"""Running exported models on onnxruntime: the CUDA execution provider when it really loads, the CPU
provider otherwise, without onnxruntime's provider-load errors on the terminal."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import numpy as np

from ..errors import GraphcError, MissingInput

_CUDA_OK: bool | None = None


@contextmanager
def _quiet_stderr():
    """Silence writes to stdout and stderr, Python's and the C++ library's alike: onnxruntime reports
    CUDA libraries that do not load on both, and ``auto`` falls back to the CPU quietly."""
    streams = []
    for stream in (sys.stdout, sys.stderr):
        try:
            streams.append(stream.fileno())
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    saved = [os.dup(fd) for fd in streams]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in streams:
            os.dup2(devnull, fd)
        yield
    finally:
        for fd, copy in zip(streams, saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


# onnxruntime's graph optimisation level per kind of graph, the faster one as measured by
# `python tools/bench_peers.py --ort-levels` (README, Performance)
OPTIMIZATION = {"forward": "ORT_ENABLE_ALL", "training": "ORT_ENABLE_EXTENDED"}


def graph_kind(model) -> str:
    """``training`` for a graphc training step (outputs ``grad/…`` or ``new/…``), else ``forward``."""
    graph = getattr(model, "graph", None)
    names = [o.name for o in graph.output] if graph is not None else []
    return "training" if any(n.startswith(("grad/", "new/")) for n in names) else "forward"


def cuda_missing() -> str:
    """What stands between this machine and the CUDA execution provider, in words."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return ("no CUDA provider: the installed onnxruntime is the CPU-only package "
                f"(providers: {', '.join(ort.get_available_providers())}; the GPU build is onnxruntime-gpu)")
    if not (os.path.exists("/dev/nvidia0") or os.path.exists("/proc/driver/nvidia/gpus") or os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()):
        return "no GPU visible (no NVIDIA device or driver: /dev/nvidia0 and /proc/driver/nvidia are absent)"
    return "the CUDA provider is installed and a GPU is visible, but the CUDA/cuDNN libraries do not load"


def session(model, device: str = "auto", optimization: str | None = None, threads: int | None = None):
    """An ``InferenceSession`` for ``model`` (a ModelProto, bytes or a path) and the provider it runs on.

    ``device``: ``cuda`` (an error if CUDA does not load), ``cpu``, or ``auto`` (CUDA when it loads).
    ``optimization``: an onnxruntime ``GraphOptimizationLevel`` name; by default the level of
    :data:`OPTIMIZATION` for the model's :func:`graph_kind`. ``threads``: onnxruntime's intra-op
    threads (default: its own choice, one per core).
    """
    import onnxruntime as ort

    global _CUDA_OK
    payload = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    options = ort.SessionOptions()
    options.log_severity_level = 3
    level = optimization or OPTIMIZATION[graph_kind(model)]
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    if threads is not None:
        options.intra_op_num_threads = threads
    want_cuda = device in ("cuda", "auto") and "CUDAExecutionProvider" in ort.get_available_providers() and _CUDA_OK is not False
    if want_cuda:
        try:
            with _quiet_stderr():
                if _CUDA_OK is None and hasattr(ort, "preload_dlls"):
                    ort.preload_dlls()  # the CUDA/cuDNN libraries of the nvidia-* wheels (graphc[cuda]), if installed
                sess = ort.InferenceSession(payload, options, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
            if sess.get_providers()[0] == "CUDAExecutionProvider":
                _CUDA_OK = True
                return sess, "CUDAExecutionProvider"
        except Exception:  # noqa: BLE001 - any failure to bring CUDA up means: use the CPU
            pass
        _CUDA_OK = False
    if device == "cuda":
        raise GraphcError(f"--device cuda: the CUDA execution provider does not load on this machine: {cuda_missing()}",
                          hint="install the CUDA runtime libraries (pip install 'graphc[cuda]') or use --device cpu/auto")
    try:
        sess = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise GraphcError(f"onnxruntime cannot load the model: {str(e).splitlines()[0]}") from None
    return sess, "CPUExecutionProvider"


def run(sess, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
    names = outputs or [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    values = sess.run(names, {k: v for k, v in feeds.items() if k in wanted})
    return dict(zip(names, values))


def load_onnx(path):
    """An ONNX model from a file, checked; a broken or unreadable file is a clear error."""
    from pathlib import Path

    import onnx

    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"no such file: {path}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - protobuf and checker raise many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GraphcError(f"{path} is not a valid ONNX model: {first}") from None
    return model
