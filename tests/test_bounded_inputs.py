"""Spec files are read bounded: only regular files, at most the size limit plus one byte, through the CLI."""

import os
import stat

import pytest

from cli_safety import graphc, refused, snapshot
from graphc.errors import GraphcError
from graphc.spec.safe_yaml import MAX_FILE_BYTES, read_bounded

MLP = "name: mlp\ninputs:\n  x: {shape: [N, 4]}\nlayers:\n  - {name: fc1, op: dense, units: 8}\n"


def test_a_directory_is_refused_as_a_directory(tmp_path):
    (tmp_path / "spec.yaml").mkdir()
    before = snapshot(tmp_path)
    refused(graphc("compile", "spec.yaml", cwd=tmp_path), "spec.yaml is a directory, expected a YAML spec file")
    assert snapshot(tmp_path) == before


def test_a_fifo_is_refused_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "spec.yaml")
    # opening a FIFO for reading blocks until a writer comes: the timeout turns a regression into a failure
    r = graphc("compile", "spec.yaml", cwd=tmp_path, timeout=20)
    refused(r, "spec.yaml is a FIFO (named pipe), expected a YAML spec file")
    assert stat.S_ISFIFO((tmp_path / "spec.yaml").lstat().st_mode)


def test_dev_zero_is_refused_as_a_device_not_read_forever(tmp_path):
    r = graphc("compile", "/dev/zero", "-o", "report.txt", cwd=tmp_path, timeout=20, memory_limit=2 * 1024**3)
    refused(r, "/dev/zero is a character device, expected a YAML spec file")
    assert list(tmp_path.iterdir()) == []


def test_an_oversized_spec_is_refused_at_line_1(tmp_path):
    (tmp_path / "big.yaml").write_text(MLP + "#" * (MAX_FILE_BYTES + 10) + "\n")
    refused(graphc("compile", "big.yaml", cwd=tmp_path), f"big.yaml:1:1: error: spec file holds more than the limit of {MAX_FILE_BYTES} bytes")


def test_read_bounded_reads_at_most_the_limit_plus_one_byte(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_bytes(b"a" * 100)
    assert read_bounded(path, 100) == b"a" * 100
    with pytest.raises(GraphcError, match="more than the limit of 99 bytes"):
        read_bounded(path, 99)


def test_a_file_that_claims_size_zero_is_still_bounded():
    # /proc files report st_size 0 whatever they hold: the limit is on the bytes read, not on stat
    with pytest.raises(GraphcError, match="more than the limit of 10 bytes"):
        read_bounded("/proc/self/maps", 10)


def test_an_include_that_is_a_fifo_is_refused_by_what_it_is(tmp_path):
    os.mkfifo(tmp_path / "lib.yaml")
    (tmp_path / "spec.yaml").write_text("include: [lib.yaml]\n" + MLP)
    refused(graphc("compile", "spec.yaml", cwd=tmp_path, timeout=20), "lib.yaml is a FIFO (named pipe), expected a YAML spec file")
