"""graphc: a declarative neural-network graph compiler and executor.

The pipeline's public functions are available from here (imported on first use, so that
``import graphc`` stays cheap); each lives in the wing of the pipeline that owns it (README, Layout).
"""

from importlib import import_module

from .errors import GraphcError
from .version import __version__

_PUBLIC = {  # name -> the module that defines it
    "load_spec": "spec.load", "json_schema": "spec.schema",
    "compile_spec": "ir.build", "build_graph": "ir.build",
    "infer_shapes": "ir.analysis", "receptive_fields": "ir.analysis", "costs": "ir.analysis",
    "training_graph": "ir.autodiff", "differentiate": "ir.autodiff", "to_training_mode": "ir.autodiff",
    "optimize": "ir.passes", "initial_params": "ir.params", "topo_order": "ir.graph", "TensorType": "tensor",
    "Program": "backends.interpreter", "run_forward": "backends.run", "run_training_step": "backends.run",
    "run_forward_ort": "backends.run", "run_training_step_ort": "backends.run",
    "forward_model": "backends.onnx_export", "training_model": "backends.onnx_export", "save_model": "backends.onnx_export",
    "with_optimizer": "train.optimizers", "compile_report": "report", "check_gradients": "gradcheck", "check_spec": "gradcheck",
}

__all__ = ["GraphcError", "__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'graphc' has no attribute '{name}'")
    value = getattr(import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
