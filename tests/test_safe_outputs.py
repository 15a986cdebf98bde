"""Outputs never destroy what the user did not ask to replace (README, "Safety"): each case through the
real CLI, asserting the message, the exit code and the directory before and after."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "specs" / "mlp_digits.yaml"


def graphc(*args, cwd=None, **kw):
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300, **kw)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, mode and contents (symlinks by their target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            out[str(p.relative_to(root))] = ("link", os.readlink(p))
        elif stat.S_ISREG(st.st_mode):
            out[str(p.relative_to(root))] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
        else:
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
    return out


@pytest.fixture
def work(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(MLP.read_text())
    (tmp_path / "old.txt").write_text("the user's file\n")
    (tmp_path / "ro.txt").write_text("read-only\n")
    (tmp_path / "ro.txt").chmod(0o444)
    (tmp_path / "adir").mkdir()
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked").chmod(0o555)
    return tmp_path


@pytest.mark.parametrize("target,reason", [
    ("missing/x.txt", "directory '{d}/missing' does not exist"),
    ("adir", "it is a directory"),
    ("ro.txt", "the file is read-only"),
    ("locked/x.txt", "directory '{d}/locked' is not writable"),
])
def test_an_output_that_cannot_be_created_is_73_and_nothing_is_created(work, target, reason):
    before = snapshot(work)
    r = graphc("compile", work / "s.yaml", "-o", work / target)
    assert r.returncode == 73, r.stderr
    assert r.stderr == f"graphc: error: cannot write '{work / target}': {reason.format(d=work)}\n"
    assert snapshot(work) == before


@pytest.mark.parametrize("command", [
    ["compile", "{s}", "-o", "{s}"],
    ["export", "{s}", "-o", "{s}"],
    ["run", "{s}", "--inputs", "{i}", "--out", "{i}"],
    ["grad", "{s}", "--inputs", "{i}", "--out", "{link}"],
    ["run", "{s}", "--inputs", "{i}", "--params", "{p}", "--out", "o.npz", "--save-params", "{p}"],
    ["run", "{s}", "--inputs", "{i}", "--out", "o.npz", "--save-params", "o.npz"],
    ["viz", "{s}", "-o", "{dot}"],
])
def test_an_output_that_is_an_input_is_refused_before_anything_runs(work, command):
    np.savez(work / "in.npz", x=np.zeros((2, 64), np.float32), label=np.zeros(2, np.int64))
    np.savez(work / "p.npz", **{"fc1.w": np.zeros((64, 100), np.float32)})
    (work / "link.npz").symlink_to(work / "in.npz")
    (work / "s.dot").symlink_to(work / "s.yaml")
    names = {"s": work / "s.yaml", "i": work / "in.npz", "p": work / "p.npz", "link": work / "link.npz", "dot": work / "s.dot"}
    before = snapshot(work)
    r = graphc(*[a.format(**names) for a in command], cwd=work)
    assert r.returncode == 73, r.stderr
    assert "of this command; nothing was run" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert snapshot(work) == before


def test_special_files_are_written_into_never_replaced(work):
    fifo = work / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    r = graphc("compile", work / "s.yaml", "-o", fifo)
    got = reader.communicate(timeout=60)[0].decode()
    assert r.returncode == 0 and "params" in got.lower() and stat.S_ISFIFO(fifo.lstat().st_mode), r.stderr
    with open(work / "shell.txt", "w") as out:  # -o /dev/stdout honours the shell's redirection
        r = subprocess.run(["graphc", "compile", str(work / "s.yaml"), "-o", "/dev/stdout"], stdout=out, stderr=subprocess.PIPE)
    assert r.returncode == 0 and (work / "shell.txt").read_text() == graphc("compile", work / "s.yaml").stdout
    assert not [p for p in work.iterdir() if p.name.endswith(".tmp")]
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_symlinked_output_is_written_through_to_its_target(work):
    (work / "link.txt").symlink_to("old.txt")
    r = graphc("compile", work / "s.yaml", "-o", work / "link.txt")
    assert r.returncode == 0, r.stderr
    assert (work / "link.txt").is_symlink() and os.readlink(work / "link.txt") == "old.txt"
    assert (work / "old.txt").read_text() == graphc("compile", work / "s.yaml").stdout


def test_a_full_device_is_74_in_one_line_and_leaves_no_temporary(work):
    before = snapshot(work)
    r = graphc("compile", work / "s.yaml", "-o", "/dev/full")
    assert r.returncode == 74 and r.stderr == "graphc: error: cannot write '/dev/full': No space left on device\n"
    np.savez(work / "in.npz", x=np.zeros((2, 64), np.float32), label=np.zeros(2, np.int64))
    r = graphc("run", work / "s.yaml", "--inputs", work / "in.npz", "--out", "/dev/full")
    assert r.returncode == 74 and "No space left on device" in r.stderr and "Traceback" not in r.stderr, r.stderr
    (work / "in.npz").unlink()
    assert snapshot(work) == before


def test_a_full_filesystem_keeps_the_old_file_and_removes_the_temporary(work):
    """A 16 KiB tmpfs (mounting needs root; elsewhere /dev/full above covers the write error)."""
    mnt = work / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        (mnt / "m.onnx").write_bytes(b"old")
        r = graphc("export", work / "s.yaml", "-o", mnt / "m.onnx")  # about 340 KB of weights
        assert r.returncode == 74, r.stderr
        assert r.stderr == f"graphc: error: cannot write '{mnt / 'm.onnx'}': No space left on device\n"
        assert sorted(p.name for p in mnt.iterdir()) == ["m.onnx"] and (mnt / "m.onnx").read_bytes() == b"old"
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_stale_temporaries_of_a_killed_writer_are_swept(work):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = work / f".out.txt.{dead.pid}.ab12cd.tmp"
    stale.write_text("half a report")
    live = work / f".out.txt.{os.getppid()}.ef34gh.tmp"  # a live process's write in progress stays
    live.write_text("being written")
    r = graphc("compile", work / "s.yaml", "-o", work / "out.txt")
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and live.exists() and (work / "out.txt").exists()


def test_side_files_get_the_main_outputs_permissions(tmp_path):
    """An ONNX model with external data: model.onnx and model.onnx.data are both 0666 less the umask."""
    code = ("import os, sys\nos.umask(0o022)\nimport graphc\nfrom graphc.backends.onnx_export import forward_model, save_model\n"
            "from graphc.ir.params import initial_params\n"
            f"g = graphc.compile_spec({str(MLP)!r})\nsave_model(forward_model(g, initial_params(g, 0)), sys.argv[1], limit=10_000)\n")
    out = tmp_path / "m.onnx"
    r = subprocess.run(["python", "-c", code, str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"m.onnx": 0o644, "m.onnx.data": 0o644}


def test_replacing_keeps_the_files_permissions(work):
    (work / "old.txt").chmod(0o600)
    r = graphc("compile", work / "s.yaml", "-o", work / "old.txt")
    assert r.returncode == 0 and stat.S_IMODE((work / "old.txt").stat().st_mode) == 0o600
