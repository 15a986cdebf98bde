"""Running the real ``graphc`` command against hostile inputs: exit code, stderr and the files around."""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

#: the exit code of a bad spec or data file
BAD_INPUT = 1


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
