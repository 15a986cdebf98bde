"""Shared test helpers: compile a spec written inline."""

from __future__ import annotations

import textwrap

import graphc
from graphc.report import compile_report


def compile_text(text: str, name: str = "inline.yaml"):
    return graphc.compile_spec(name, textwrap.dedent(text))


def report_of(text: str, expand: bool = False) -> dict:
    return compile_report(compile_text(text), expand=expand)


def layer(report: dict, name: str) -> dict:
    found = [row for row in report["layers"] if row["name"] == name]
    assert found, f"no layer {name} in {[r['name'] for r in report['layers']]}"
    return found[0]
