"""Running the real ``graphc`` command against hostile inputs: exit code, stderr and the files around."""

from __future__ import annotations

import io
import os
import resource
import subprocess
from pathlib import Path

from graphc.errors import EXIT_DATA as BAD_INPUT  # a bad spec or data file


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time (FIFOs and devices are not followed)."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def graphc(*args, cwd: Path, memory_limit: int | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``graphc ARGS`` in ``cwd``; ``memory_limit`` bytes of address space (``RLIMIT_AS``), so that an
    attempt to allocate without bound fails the test instead of swapping."""

    def limit():
        if memory_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    env = {**os.environ, "PYTHONFAULTHANDLER": ""}
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          preexec_fn=limit, env=env)


def refused(r: subprocess.CompletedProcess, *fragments: str, code: int = BAD_INPUT) -> str:
    """The one-line message of a refused command, checked for each fragment, no traceback."""
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    for fragment in fragments:
        assert fragment in r.stderr, r.stderr
    return r.stderr


def zip_bomb(path: Path, name: str, shape: tuple[int, ...], dtype: str = "<f4") -> int:
    """Write an ``.npz`` whose one array ``name`` holds ``shape`` zeros, deflated: gigabytes of data
    in a file of a few MB. Built from one deflated chunk repeated (each chunk ends with a full flush,
    which resets the compressor, so identical chunks deflate identically), with the true CRC, so the
    archive is valid and numpy would inflate all of it. Returns the uncompressed size."""
    import struct
    import zlib

    import numpy as np

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    head = header.getvalue()
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    chunk_size = 1 << 24
    whole, rest = divmod(nbytes, chunk_size)

    def deflated(data: bytes, final: bool = False) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)

    zeros = bytes(chunk_size)
    crc = zlib.crc32(head)
    for _ in range(whole):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(rest), crc)
    body = [deflated(head)] + [deflated(zeros)] * whole + [deflated(bytes(rest), final=True)]
    csize, usize = sum(map(len, body)), len(head) + nbytes
    fname = f"{name}.npy".encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, csize, usize, len(fname), 0) + fname
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, csize, usize, len(fname), 0, 0, 0, 0, 0, 0) + fname
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + csize, 0)
    with open(path, "wb") as f:
        f.write(local)
        for part in body:
            f.write(part)
        f.write(central + end)
    return usize
