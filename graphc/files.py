"""Files: atomic writes, and ``.npy``/``.npz`` arrays read safely (pickles refused, sizes checked
against the headers before anything is allocated)."""

from __future__ import annotations

import io
import math
import os
import re
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import CannotWrite, GraphcError, IOFailure, MissingInput, printable

MAX_ARRAY_BYTES = 8 * 1024**3


#: Paths that name an already open descriptor of this process: written to that descriptor, so that
#: ``-o /dev/stdout`` honours the shell's redirection instead of reopening (or replacing) its target.
_DESCRIPTOR_PATHS = {"/dev/stdout": 1, "/dev/stderr": 2}


def _descriptor(path: str) -> int | None:
    if path in _DESCRIPTOR_PATHS:
        return _DESCRIPTOR_PATHS[path]
    for prefix in ("/dev/fd/", "/proc/self/fd/"):
        if path.startswith(prefix) and path[len(prefix):].isdigit():
            return int(path[len(prefix):])
    return None


def _shown(path) -> str:
    return printable(str(path))


def cannot_write(path, reason: str) -> CannotWrite:
    return CannotWrite(f"cannot write '{_shown(path)}': {reason}")


def _io_failure(path, e: OSError) -> IOFailure:
    return IOFailure(f"cannot write '{_shown(path)}': {e.strerror or e}")


def new_file_mode() -> int:
    """The permissions of a file the user asked for: 0666 less the umask (``mkstemp`` makes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def output_target(path: str | Path) -> tuple[Path, int | None]:
    """Where writing ``path`` really goes, checked before anything is written: ``(file, mode)`` for a
    regular file or a new one (a symlink resolved to its target; ``mode`` the existing file's
    permissions, kept on replace), ``(file, None)`` for a special file (device, FIFO, descriptor),
    which is written into as a stream and never replaced. Raises :class:`CannotWrite` (exit 73)."""
    if _descriptor(str(path)) is not None:
        return Path(path), None
    target = Path(os.path.realpath(path))  # a symlinked output is written through to its target
    if target.parts[:2] == ("/", "dev"):  # the system's devices are never replaced, even if one became a plain file
        return target, None
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise cannot_write(path, e.strerror or str(e)) from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise cannot_write(path, "it is a directory")
        if not stat.S_ISREG(st.st_mode):
            return target, None
        if not st.st_mode & 0o222:  # checked by the mode bits: root may write anything, but should not here
            raise cannot_write(path, "the file is read-only")
    parent = target.parent
    if not parent.is_dir():
        raise cannot_write(path, f"directory '{_shown(parent)}' does not exist" if not parent.exists()
                           else f"'{_shown(parent)}' is not a directory")
    pst = parent.stat()
    if not os.access(parent, os.W_OK | os.X_OK) or not pst.st_mode & 0o222:
        raise cannot_write(path, f"directory '{_shown(parent)}' is not writable")
    return target, (stat.S_IMODE(st.st_mode) if st is not None else new_file_mode())


def _stream(path: str | Path, payload: bytes) -> None:
    """Write into a special file (``/dev/null``, a FIFO, standard output) without replacing it."""
    fd = _descriptor(str(path))
    try:
        if fd == 1:
            import sys

            sys.stdout.flush()
        own = fd is None
        if own:
            fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
        finally:
            if own:
                os.close(fd)
    except OSError as e:
        raise _io_failure(path, e) from None


def temp_prefix(name: str) -> str:
    """``.NAME.<pid>.``: the temporaries of a write carry their writer's pid, so that the leftovers of
    a killed process can be told from another process's write in progress."""
    return f".{name}.{os.getpid()}."


def sweep_temporaries(directory: Path, name: str) -> None:
    """Remove ``.NAME.<pid>.XXXX.tmp`` files (and directories) beside ``NAME`` left by a process that
    is no longer running (killed mid-write)."""
    import shutil

    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    head = f".{name}."
    for entry in entries:
        if not (entry.name.startswith(head) and entry.name.endswith(".tmp")):
            continue
        pid = entry.name[len(head):].split(".", 1)[0]
        if pid.isdigit() and (int(pid) == os.getpid() or process_alive(int(pid))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:
        return False
    return True


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path``, never half-written and never destroying what was not asked for:
    a regular file goes through a temporary file beside it (fsynced, then renamed into place; the
    old file's permissions kept); a symlink is written through to its target; a special file
    (``/dev/null``, a FIFO, ``/dev/stdout``) is written into as a stream, never replaced. A
    missing or unwritable directory, a directory or read-only file in the way: :class:`CannotWrite`
    (exit 73), nothing created. A full disk or an I/O error: :class:`IOFailure` (exit 74), the old file
    intact, the temporary removed. Stale temporaries of killed writers beside the file are swept."""
    payload = data.encode() if isinstance(data, str) else data
    target, mode = output_target(path)
    if mode is None:
        _stream(path, payload)
        return
    sweep_temporaries(target.parent, target.name)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target.name), suffix=".tmp")
    except OSError as e:
        raise cannot_write(path, e.strerror or str(e)) from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _io_failure(path, e) from None
        raise


def write_atomic_staged(path: str | Path, write) -> None:
    """Like :func:`write_atomic` for a writer that makes ``path`` plus side files beside it (an ONNX
    model and its ``<name>.data``): ``write(staged_path)`` writes into a temporary directory beside
    ``path``; every file it made gets the main output's permissions and is renamed into place, the
    side files first. A special file cannot take side files: :class:`CannotWrite`."""
    import shutil

    target, mode = output_target(path)
    if mode is None:
        raise cannot_write(path, "it is not a regular file, and this output needs files beside it")
    sweep_temporaries(target.parent, target.name)
    try:
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=temp_prefix(target.name), suffix=".tmp"))
    except OSError as e:
        raise cannot_write(path, e.strerror or str(e)) from None
    try:
        staged = staging / target.name
        write(staged)
        made = sorted(staging.iterdir(), key=lambda f: f.name == target.name)  # the main file last
        for f in made:
            os.chmod(f, mode)
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for f in made:
            os.replace(f, target.parent / f.name)
    except OSError as e:
        raise _io_failure(path, e) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_outputs(outputs: dict[str, str | Path | None], inputs: dict[str, str | Path | None]) -> None:
    """Refuse, before anything runs, an output that is one of the command's inputs (or another of its
    outputs): ``{"--out": path}`` against ``{"SPEC": path, "--inputs": path}``. Special files
    (``/dev/null``) are never the same as an input. Raises :class:`CannotWrite`."""
    def same(a, b) -> bool:
        try:
            return os.path.samefile(a, b)
        except OSError:
            return os.path.realpath(a) == os.path.realpath(b)

    seen: list[tuple[str, str | Path]] = [(k, v) for k, v in inputs.items() if v]
    for flag, out in outputs.items():
        if not out or _descriptor(str(out)) is not None:
            continue
        try:
            if not stat.S_ISREG(os.stat(out).st_mode):
                continue
        except OSError:
            pass
        for other, given in seen:
            if same(out, given):
                role = "the input" if other in inputs else "the output"
                raise CannotWrite(f"cannot write '{_shown(out)}' ({flag}): it is {role} {other} ('{_shown(given)}') "
                                  "of this command; nothing was run", hint="choose another output path")
        seen.append((flag, out))


def safe_component(text: str, default: str = "run") -> str:
    """``text`` made safe as one path component (a run directory named after a spec's ``name``): the
    parts between ``/`` and ``\\`` joined by ``_``, less ``.``, ``..`` and leading dots; control
    characters become ``_``; at most 100 characters; ``default`` when nothing is left.

    ``../../x`` → ``x``, ``/abs/path`` → ``abs_path``."""
    cleaned = "".join("_" if (ord(c) < 32 or 0x7f <= ord(c) < 0xa0) else c for c in str(text))
    parts = [part.strip().lstrip(".") for part in re.split(r"[/\\]", cleaned)]
    joined = "_".join(part for part in parts if part)[:100]
    return joined or default


def make_directory(path: str | Path, what: str) -> Path:
    """Create the directory ``path`` (and its parents) for an output; a file in the way or an
    unwritable parent is :class:`CannotWrite`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CannotWrite(f"cannot create {what} '{_shown(path)}': a file of that name exists") from None
    except OSError as e:
        raise CannotWrite(f"cannot create {what} '{_shown(path)}': {e.strerror or e}") from None
    if not path.is_dir():
        raise CannotWrite(f"cannot create {what} '{_shown(path)}': it exists and is not a directory")
    return path


def require_regular_file(path, expected: str, prefix: str = "") -> None:
    """Refuse, by ``stat`` alone (nothing is opened: opening a FIFO blocks), a missing or unreadable
    path (exit 66) and a directory, FIFO, device or socket where ``expected`` belongs (exit 65)."""
    try:
        kind = file_kind(os.stat(path).st_mode)
    except FileNotFoundError:
        raise MissingInput(f"{prefix}no such file: {path}") from None
    except OSError as e:
        raise MissingInput(f"{prefix}cannot read {path}: {e.strerror}") from None
    if kind is not None:
        raise GraphcError(f"{prefix}{path} is {kind}, expected {expected}")


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
    require_regular_file(path, "an .npz file of arrays", f"{what}: ")
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
