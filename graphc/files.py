"""Files: atomic writes, and ``.npy``/``.npz`` arrays read safely (pickles refused, sizes checked
against the headers before anything is allocated)."""

from __future__ import annotations

import io
import math
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import GraphcError, MissingInput

MAX_ARRAY_BYTES = 8 * 1024**3


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place: never half-written."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_kind(mode: int) -> str | None:
    """What a non-regular file is, for the message that refuses it (None: a regular file)."""
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def array_headers(path: str | Path, what: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Name → (shape, dtype) of every array of a ``.npz`` (or one ``.npy``, named by the file stem),
    from the ``.npy`` headers alone: a compressed member is inflated only as far as its header, so a
    small file that would decompress to gigabytes costs nothing here. Pickles are refused."""
    path = Path(path)
    try:
        kind = file_kind(path.stat().st_mode)
    except FileNotFoundError:
        raise MissingInput(f"{what}: no such file: {path}") from None
    except OSError as e:
        raise MissingInput(f"{what}: cannot read {path}: {e.strerror}") from None
    if kind is not None:
        raise GraphcError(f"{what}: {path} is {kind}, expected an .npz file of arrays")
    out = {}
    try:
        if path.suffix == ".npy":
            with open(path, "rb") as f:
                out[path.stem] = _check_header(f, path.name, what, path.stat().st_size)
            return out
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    raise GraphcError(f"{what}: {path} holds '{info.filename}', which is not a .npy array")
                with z.open(info) as f:
                    out[info.filename[:-4]] = _check_header(f, info.filename, what, info.file_size)
        return out
    except GraphcError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise GraphcError(f"{what}: cannot read {path} as .npz/.npy arrays: {e}",
                          hint="write it with numpy.savez (pickled objects are refused)") from None


def load_arrays(path: str | Path, what: str) -> dict[str, np.ndarray]:
    """Arrays of a ``.npz`` (or one ``.npy``, named by the file stem). Pickles are refused and sizes
    are checked against the file's headers (:func:`array_headers`) before anything is allocated."""
    path = Path(path)
    array_headers(path, what)
    try:
        if path.suffix == ".npy":
            return {path.stem: np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise GraphcError(f"{what}: cannot read {path} as .npz/.npy arrays: {e}",
                          hint="write it with numpy.savez (pickled objects are refused)") from None


def _check_header(f, name: str, what: str, stored_bytes: int) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(f)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise GraphcError(f"{what}: array '{name}' has an unsupported .npy format version {version}")
    shape, _, dtype = read(f)
    if dtype.hasobject:
        raise GraphcError(f"{what}: array '{name}' holds Python objects (a pickle); only numeric arrays are accepted")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES or nbytes > stored_bytes:
        raise GraphcError(f"{what}: array '{name}' claims {nbytes} bytes ({shape} {dtype}) but the file stores {stored_bytes}")
    return tuple(shape), dtype


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a ``.npz`` atomically (temporary file, then rename)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())
