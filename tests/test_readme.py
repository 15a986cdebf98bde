"""The README's examples are real: its spec compiles, its commands exist."""

import re
from pathlib import Path

import graphc
from graphc.report import compile_report

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_spec_example_compiles():
    block = re.search(r"## The spec language.*?```yaml\n(.*?)```", README, re.S).group(1)
    report = compile_report(graphc.compile_spec("README.md#example", block))
    assert report["outputs"][0]["shape"] == ["N", 10]
    assert [r["name"] for r in report["layers"]] == ["stem", "stage1", "pool", "fc"]


def test_readme_opens_with_the_two_commands():
    first = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert first == ["pip install -e . && graphc compile specs/resnet18.yaml",
                     "pip install -e '.[test]' && python -m pytest -q"]
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "pip install -q -e '.[test]' && python -m pytest -q" in ci
