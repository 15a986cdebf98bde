"""Reading an ONNX file for import, with the export side's protections.

- the file must be a regular file (``files.require_regular_file``: a FIFO is never opened), of at
  most protobuf's 2 GB (:data:`MAX_MODEL_BYTES`), read whole and parsed once: garbage and truncated
  files are a ``GraphcError`` saying so, never a protobuf traceback;
- external tensor data (``MODEL.onnx.data``, as ``graphc export`` writes beyond 2 GB) must lie in the
  model's directory or below it: an absolute location, a ``..`` that climbs out, or a symlink that
  leads out is refused before any byte of it is read, and each tensor's offset and length must fit
  in its (regular) file;
- the default-domain opset must be one graphc knows (≤ :data:`MAX_OPSET`); other domains are
  refused by the node (``to_spec``), so a model using one op of ``ai.onnx.ml`` says which node.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import GraphcError, MissingInput
from ..files import require_regular_file

#: protobuf refuses messages of 2 GB and more; larger models keep their tensors in external data
MAX_MODEL_BYTES = 2**31 - 1
#: the newest default-domain opset whose operators the importer's rules were written against
MAX_OPSET = 23
#: the oldest: IR version 3 models (opset 7–9) are what the model zoo ships
MIN_OPSET = 7


def read_model(path) -> "onnx.ModelProto":  # noqa: F821 - onnx is imported on first use
    """The model in ``path``, its external data loaded from inside its directory, its opset checked."""
    import onnx
    from google.protobuf.message import DecodeError

    shown = str(path)
    require_regular_file(shown, "an ONNX model")
    size = os.stat(shown).st_size
    if size > MAX_MODEL_BYTES:
        raise GraphcError(f"{shown}: {size:,} bytes is more than protobuf's 2 GB limit for one ONNX file",
                          hint="a model this large keeps its tensors in external data (MODEL.onnx.data)")
    try:
        with open(shown, "rb") as f:
            raw = f.read(MAX_MODEL_BYTES + 1)
    except OSError as e:
        raise MissingInput(f"cannot read {shown}: {e.strerror}") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(raw)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise GraphcError(f"{shown} is not a valid ONNX model: the protobuf does not parse "
                          f"({str(e).strip() or type(e).__name__}; a truncated or damaged file?)") from None
    if not raw or not model.HasField("graph") or model.ir_version < 1:
        raise GraphcError(f"{shown} is not a valid ONNX model: " + ("the file is empty" if not raw else "it has no graph or IR version"),
                          hint="graphc import reads ONNX ModelProto files (.onnx)")
    load_external_data(model, Path(shown))
    check_opsets(model, shown)
    return model


def check_opsets(model, shown: str) -> None:
    """The default-domain opset must lie in [MIN_OPSET, MAX_OPSET]."""
    versions = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    default = versions.get("ai.onnx")
    if default is None:
        if any(n.domain in ("", "ai.onnx") for n in model.graph.node):
            raise GraphcError(f"{shown}: the model uses default-domain operators but imports no default opset")
        return
    if default > MAX_OPSET:
        raise GraphcError(f"{shown}: opset {default} is newer than graphc knows (opsets {MIN_OPSET} to {MAX_OPSET})",
                          hint=f"re-export the model at opset {MAX_OPSET} or lower (torch.onnx.export(..., opset_version={MAX_OPSET}))")
    if default < MIN_OPSET:
        raise GraphcError(f"{shown}: opset {default} is older than graphc reads (opsets {MIN_OPSET} to {MAX_OPSET})",
                          hint="convert it with onnx.version_converter.convert_version(model, 13)")


def _external_tensors(model):
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    return [t for t in _get_all_tensors(model) if uses_external_data(t)]


def load_external_data(model, path: Path) -> None:
    """Fill every external tensor from its file, which must lie inside ``path``'s directory."""
    tensors = _external_tensors(model)
    if not tensors:
        return
    import numpy as np
    from onnx import TensorProto, helper

    base = path.resolve().parent
    for t in tensors:
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        where = f"{path}: tensor '{t.name}' keeps its data in '{location}'"
        if not location or os.path.isabs(location) or Path(location).drive:
            raise GraphcError(f"{where}, outside the model's directory", hint="external data must be a relative path beside the model")
        target = (base / location).resolve()
        if target != base and base not in target.parents:
            raise GraphcError(f"{where}, outside the model's directory {base}", hint="external data must lie beside the model or below it")
        require_regular_file(str(target), "a file of external tensor data", f"{where}: ")
        offset, length = int(info.get("offset", 0) or 0), info.get("length")
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize if t.data_type != TensorProto.STRING else 1
        need = int(np.prod(t.dims, dtype=np.int64)) * itemsize
        length = int(length) if length else need
        file_size = target.stat().st_size
        if length != need or offset < 0 or offset + length > file_size:
            raise GraphcError(f"{where}: {length:,} bytes at offset {offset:,} do not fit its {file_size:,}-byte file "
                              f"(the tensor {list(t.dims)} needs {need:,})", hint="the data file is truncated or belongs to another model")
        with open(target, "rb") as f:
            f.seek(offset)
            t.raw_data = f.read(length)
        del t.external_data[:]
        t.data_location = TensorProto.DEFAULT
