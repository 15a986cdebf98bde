"""Receptive fields against an independent computation: the closed form for a chain of windows,

    r_L = 1 + Σ_l (k_l_eff − 1) · Π_{i<l} s_i,   j_L = Π s_i,   P_L = Σ_l p_l · Π_{i<l} s_i,

computed here from the YAML values themselves, not from graphc's window rules.
"""

from pathlib import Path

import yaml

import graphc
from graphc.report import compile_report

SPECS = Path(__file__).resolve().parent.parent / "specs"


def closed_form(windows):
    r, j, p = 1, 1, 0
    for k, s, pad, d in windows:
        r += (d * (k - 1)) * j
        p += pad * j
        j *= s
    return r, j, p


def chain_windows(spec_path):
    """(kernel, stride, padding, dilation) of each conv/pool layer of a purely sequential spec."""
    data = yaml.safe_load(Path(spec_path).read_text())
    out = []

    def visit(entries, args):
        for e in entries:
            e = {k: (args.get(v[1:], v) if isinstance(v, str) and v.startswith("$") else v) for k, v in e.items()}
            if "block" in e:
                block = data["blocks"][e["block"]]
                inner = {**block.get("args", {}), **e.get("args", {})}
                for _ in range(e.get("repeat", 1)):
                    visit(block["layers"], inner)
                continue
            if e["op"] in ("conv2d", "maxpool2d", "avgpool2d"):
                k = e["kernel"]
                s = e.get("stride", 1 if e["op"] == "conv2d" else k)
                for _ in range(e.get("repeat", 1)):
                    out.append((k, s, e.get("padding", 0), e.get("dilation", 1)))

    visit(data["layers"], {})
    return out


def last_spatial(report):
    rows = [r for r in report["layers"] if r["receptive_field"] is not None]
    return rows[-1]["receptive_field"]


def test_vgg16_field_matches_closed_form_and_known_212():
    path = SPECS / "vgg16.yaml"
    r, j, p = closed_form(chain_windows(path))
    assert (r, j) == (212, 32)  # the published receptive field of VGG-16's pool5
    got = last_spatial(compile_report(graphc.compile_spec(path), expand=True))
    assert got["size"] == [r, r] and got["stride"] == [j, j] and got["padding"] == [p, p]


def test_dilated_stack_field_matches_closed_form():
    path = SPECS / "dilated_stack.yaml"
    windows = chain_windows(path)
    assert any(d > 1 for *_, d in windows)
    r, j, p = closed_form(windows)
    report = compile_report(graphc.compile_spec(path), expand=True)
    got = last_spatial(report)
    assert got["size"] == [r, r] and got["stride"] == [j, j] and got["padding"] == [p, p]
    assert r == 31
