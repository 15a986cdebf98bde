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


def test_readme_compile_transcript_is_the_real_output():
    import subprocess

    shown = re.search(r"```\n\$ graphc compile specs/lenet5.yaml\n(.*?)```", README, re.S).group(1)
    root = Path(__file__).resolve().parent.parent
    real = subprocess.run(["graphc", "compile", "specs/lenet5.yaml"], capture_output=True, text=True, cwd=root, timeout=120)
    assert real.returncode == 0, real.stderr
    assert shown == real.stdout


def test_readme_documents_every_compile_json_key():
    from graphc.ir.autodiff import training_graph
    from graphc.ir.passes import optimize
    from graphc.report import backward_report

    root = Path(__file__).resolve().parent.parent
    graph = graphc.compile_spec(str(root / "specs" / "resnet20_cifar.yaml"))
    report = backward_report(optimize(training_graph(graph))[0], compile_report(graph))
    keys = set(report)
    for row in report["layers"] + [p for r in report["layers"] for p in r.get("parts", [])]:
        keys |= set(row) | {f"attributes.{k}" for k in row.get("attributes", {})}
    keys |= {k for b in report["backward"] for k in b}
    section = README[README.index("## `graphc compile`"):README.index("## Errors")]
    running = README[README.index("## Running, differentiating"):README.index("## ONNX export")]
    for key in sorted(keys):
        name = key.split(".")[-1]
        if key.startswith("attributes.") and name != "padding_resolved":
            continue  # op attributes are documented per op by `graphc ops KIND`
        assert re.search(rf"`[^`\n]*\b{name}\b[^`\n]*`", section + running), f"compile --json key '{key}' is not in the README"
