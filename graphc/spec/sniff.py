"""What a file that is not a YAML spec looks like, from its first bytes (its "magic number").

``graphc compile lenet.onnx`` should say "this is an ONNX model", not "not UTF-8 text". Each format
is recognised by its signature; ONNX, which has none (a protobuf ``ModelProto``), by its first
field: ``ir_version`` (field 1, a small varint: bytes ``08 NN``) followed by another ModelProto field.
"""

from __future__ import annotations

import io
import zipfile

#: (signature, description, what to do instead)
SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image", "graphc reads YAML specs; 'graphc viz SPEC -o OUT.png' writes pictures"),
    (b"\xff\xd8\xff", "a JPEG image", "graphc reads YAML specs"),
    (b"GIF87a", "a GIF image", "graphc reads YAML specs"),
    (b"GIF89a", "a GIF image", "graphc reads YAML specs"),
    (b"%PDF-", "a PDF document", "graphc reads YAML specs"),
    (b"\x1f\x8b", "gzip-compressed data", "graphc reads uncompressed YAML specs: gunzip it first if it holds one"),
    (b"\xfd7zXZ\x00", "xz-compressed data", "graphc reads uncompressed YAML specs: unxz it first if it holds one"),
    (b"\x93NUMPY", "a NumPy .npy array", "arrays are --inputs/--params files; the spec is a YAML file"),
    (b"\x7fELF", "an executable (ELF)", "graphc reads YAML specs"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras .h5 model?)", "graphc reads YAML specs"),
)

#: ModelProto's field tags after ir_version: producer_name (2), producer_version (3), domain (4),
#: model_version (5), doc_string (6), graph (7), opset_import (8).
_ONNX_NEXT_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42}


def _onnx(raw: bytes) -> str | None:
    if len(raw) < 3 or raw[0] != 0x08 or raw[1] >= 0x80 or raw[2] not in _ONNX_NEXT_TAGS:
        return None
    text = f"an ONNX model (IR version {raw[1]}"
    if raw[2] == 0x12 and len(raw) > 3 and raw[3] < 0x80:  # producer_name: a short string
        producer = raw[4:4 + raw[3]].decode("utf-8", "replace")
        text += f", produced by {producer}" if producer else ""
    return text + ")"


def _zip(raw: bytes) -> tuple[str, str]:
    try:
        names = zipfile.ZipFile(io.BytesIO(raw)).namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        names = []
    if names and all(n.endswith(".npy") for n in names):
        return "a NumPy .npz archive", "arrays are --inputs/--params files; the spec is a YAML file"
    if any(n.endswith("data.pkl") for n in names):
        return "a PyTorch checkpoint (a zip with pickled data)", "graphc reads YAML specs; write the architecture as one"
    return "a zip archive", "graphc reads YAML specs: unzip it first if it holds one"


def sniff(raw: bytes) -> tuple[str, str] | None:
    """``(description, hint)`` for a known non-YAML format, or None (maybe YAML)."""
    for signature, description, hint in SIGNATURES:
        if raw.startswith(signature):
            return description, hint
    if raw[:3] == b"BZh" and raw[3:4].isdigit() and raw[4:10] == b"1AY&SY":
        return "bzip2-compressed data", "graphc reads uncompressed YAML specs: bunzip2 it first if it holds one"
    if raw.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip(raw)
    onnx = _onnx(raw)
    if onnx:
        return onnx, "a model is a spec's source, not a part of one: 'graphc import MODEL.onnx -o OUT.yaml' turns it into a spec"
    return None
