"""The model zoo: the torchvision networks in specs/ give torchvision's parameter counts, per-stage
output shapes at 224×224 and MACs, and the README's table says so.

The expected figures are literals: parameter counts and ``_ops`` (GMACs, which torchvision calls
GFLOPS) from the ``meta`` of torchvision's weights (``<Model>_Weights.IMAGENET1K_V1``), shapes from the
comments in torchvision's model definitions or worked out by hand in the comments here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from test_specs import report, row

ROOT = Path(__file__).parent.parent

#: spec → (torchvision's num_params, torchvision's _ops in GMACs)
TORCHVISION = {
    "resnet18": (11_689_512, 1.814),
    "resnet50": (25_557_032, 4.089),
    "squeezenet1_1": (1_235_496, 0.349),
    "googlenet": (6_624_904, 1.498),
    "alexnet": (61_100_840, 0.714),
    "mobilenet_v2": (3_504_872, 0.301),
    "mobilenet_v3_small": (2_542_856, 0.057),
    "efficientnet_b0": (5_288_548, 0.386),
    # torchvision's 17.564 counts the attention's two matmuls too (scores Q·Kᵀ and context A·V), as graphc
    "vit_b16": (86_567_656, 17.564),
}

#: spec → {layer: (C, H, W) at 224×224} (the batch dim N left out), or (D,) after the pool
STAGES = {
    "resnet50": {"conv1": (64, 112, 112), "maxpool": (64, 56, 56), "layer1": (256, 56, 56), "layer2": (512, 28, 28),
                 "layer3": (1024, 14, 14), "layer4": (2048, 7, 7), "avgpool": (2048,), "fc": (1000,)},
    # floor((224 − 3)/2) + 1 = 111; ceil-mode pools: ceil((111 − 3)/2) + 1 = 55, then 27, 13
    "squeezenet1_1": {"conv1": (64, 111, 111), "pool1": (64, 55, 55), "fire2": (128, 55, 55), "pool2": (128, 27, 27),
                      "fire3": (256, 27, 27), "pool3": (256, 13, 13), "fire4": (384, 13, 13), "fire5": (512, 13, 13),
                      "final_conv": (1000, 13, 13), "avgpool": (1000,)},
    "googlenet": {"conv1": (64, 112, 112), "maxpool1": (64, 56, 56), "conv2": (64, 56, 56), "conv3": (192, 56, 56),
                  "maxpool2": (192, 28, 28), "inception3a": (256, 28, 28), "inception3b": (480, 28, 28),
                  "maxpool3": (480, 14, 14), "inception4a": (512, 14, 14), "inception4b": (512, 14, 14),
                  "inception4c": (512, 14, 14), "inception4d": (528, 14, 14), "inception4e": (832, 14, 14),
                  "maxpool4": (832, 7, 7), "inception5a": (832, 7, 7), "inception5b": (1024, 7, 7),
                  "avgpool": (1024,), "fc": (1000,)},
    # floor((224 + 4 − 11)/4) + 1 = 55, then floor((55 − 3)/2) + 1 = 27, 13, 6
    "alexnet": {"conv1": (64, 55, 55), "pool1": (64, 27, 27), "conv2": (192, 27, 27), "pool2": (192, 13, 13),
                "conv3": (384, 13, 13), "conv4": (256, 13, 13), "conv5": (256, 13, 13), "pool5": (256, 6, 6),
                "avgpool": (256, 6, 6), "flatten": (9216,), "fc1": (4096,), "fc2": (4096,), "fc3": (1000,)},
    # the stages of torchvision's inverted_residual_setting: a stride-2 stage halves 112 to 56, 28, 14, 7
    "mobilenet_v2": {"stem": (32, 112, 112), "stage1": (16, 112, 112), "stage2": (24, 56, 56), "stage3": (32, 28, 28),
                     "stage4": (64, 14, 14), "stage5": (96, 14, 14), "stage6": (160, 7, 7), "stage7": (320, 7, 7),
                     "last_conv": (1280, 7, 7), "avgpool": (1280,), "fc": (1000,)},
    # features.1 .. features.11 (torchvision's comments C1 .. C4: 56, 28, 14, 7), features.12, classifier
    "mobilenet_v3_small": {"stem": (16, 112, 112), "bneck1": (16, 56, 56), "bneck2": (24, 28, 28), "bneck3": (24, 28, 28),
                           "bneck4": (40, 14, 14), "bneck5_6": (40, 14, 14), "bneck7": (48, 14, 14), "bneck8": (48, 14, 14),
                           "bneck9": (96, 7, 7), "bneck10_11": (96, 7, 7), "last_conv": (576, 7, 7), "avgpool": (576,),
                           "fc1": (1024,), "fc": (1000,)},
    "efficientnet_b0": {"stem": (32, 112, 112), "stage1": (16, 112, 112), "stage2": (24, 56, 56), "stage3": (40, 28, 28),
                        "stage4": (80, 14, 14), "stage5": (112, 14, 14), "stage6": (192, 7, 7), "stage7": (320, 7, 7),
                        "last_conv": (1280, 7, 7), "avgpool": (1280,), "fc": (1000,)},
    # 224/16 = 14: 14·14 = 196 patch tokens, 197 with the class token (torchvision's seq_length)
    "vit_b16": {"conv_proj": (768, 14, 14), "tokens": (196, 768), "with_class": (197, 768), "encoder": (197, 768),
                "ln": (197, 768), "class_features": (1, 768), "head": (1000,)},
}


@pytest.mark.parametrize("stem", sorted(TORCHVISION))
def test_params_and_macs_are_torchvisions(stem):
    rep = report(stem)
    params, gmacs = TORCHVISION[stem]
    assert rep["params_trainable"] == params
    assert round(rep["macs_total"] / 1e9, 3) == gmacs
    assert rep["inputs"][0]["shape"] == ["N", 3, 224, 224]
    assert rep["outputs"][0]["shape"] == ["N", 1000]


@pytest.mark.parametrize("stem", sorted(STAGES))
def test_stage_shapes_at_224_are_torchvisions(stem):
    got = {name: tuple(row(stem, name)["shape"]) for name in STAGES[stem]}
    assert got == {name: ("N",) + shape for name, shape in STAGES[stem].items()}


def readme_zoo_table() -> dict[str, tuple[int, int]]:
    """The README's model-zoo table: spec → (torchvision's count, graphc's count)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("| model | spec | torchvision's count | graphc's count | source |"):]
    rows = {}
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        spec = re.fullmatch(r"`specs/(\w+)\.yaml`", cells[1]).group(1)
        rows[spec] = (int(cells[2].replace(",", "")), int(cells[3].replace(",", "")))
    return rows


def test_readme_table_gives_torchvisions_and_graphcs_counts():
    table = readme_zoo_table()
    assert set(table) == set(TORCHVISION)
    for stem, (theirs, ours) in table.items():
        assert theirs == TORCHVISION[stem][0], stem
        assert ours == report(stem)["params_trainable"] == theirs, stem


def test_resnet50_bottlenecks():
    rows = {r["name"]: r for r in report("resnet50", True)["layers"]}
    # the stride is on the 3x3 conv (torchvision's v1.5), the projection shortcut on block 0 of each stage
    assert rows["layer2.0.conv1"]["shape"] == ["N", 128, 56, 56]
    assert rows["layer2.0.conv2"]["shape"] == ["N", 128, 28, 28]
    assert rows["layer2.0.downsample_conv"]["params"] == 256 * 512
    assert rows["layer1.0.downsample_conv"]["shape"] == ["N", 256, 56, 56]  # 64 → 256 channels, stride 1
    assert rows["layer3.rest.4.conv3"]["params"] == 256 * 1024
    assert "layer3.rest.5" not in rows  # 6 blocks: '0' and rest.0 .. rest.4
    # 53 batchnorms: running mean + variance of 26,560 channels
    assert report("resnet50")["params_non_trainable"] == 53_120


def test_inverted_residuals_expand_filter_depthwise_and_add_where_torchvision_does():
    v2 = {r["name"]: r for r in report("mobilenet_v2", True)["layers"]}
    assert v2["stage2.0.expand.conv"]["params"] == 16 * 96  # t = 6: 16 → 96 channels
    assert v2["stage2.0.main.dw.conv"]["params"] == 96 * 3 * 3  # groups = channels: one 3x3 filter each
    assert v2["stage2.0.main.dw.conv"]["shape"] == ["N", 96, 56, 56]  # the stride sits on the depthwise conv
    assert "stage1.expand.conv" not in v2 and "stage7.expand.conv" in v2  # t = 1 has no expansion conv
    # a repeat of 1 has no index: stage2's second block is stage2.rest (torchvision's features.3)
    assert "stage2.0.add" not in v2 and v2["stage2.rest.add"]["inputs"] == ["stage2.rest.residual", "stage2.0"]
    assert "stage4.rest.2.add" in v2 and "stage4.rest.3" not in v2  # 4 blocks: '0' and rest.0 .. rest.2
    assert v2["stage5.0.main.dw.conv"]["shape"] == ["N", 384, 14, 14]  # stride 1, 64 → 96 channels: no shortcut
    assert "stage5.0.add" not in v2
    v3 = {r["name"]: r for r in report("mobilenet_v3_small", True)["layers"]}
    # squeeze-excite: 96 → _make_divisible(96 / 4, 8) = 24 → 96, 1x1 convs with bias, hardsigmoid 1/6
    assert v3["bneck4.main.se.fc1"]["params"] == 96 * 24 + 24 and v3["bneck4.main.se.fc2"]["params"] == 24 * 96 + 96
    assert v3["bneck4.main.se.avgpool"]["shape"] == ["N", 96, 1, 1]
    assert v3["bneck4.main.se.scale"]["shape"] == ["N", 96, 14, 14]
    assert v3["bneck4.main.dw.conv"]["params"] == 96 * 5 * 5
    assert "bneck2.se" not in str(sorted(v3)) and "bneck1.expand" not in str(sorted(v3))
    assert report("mobilenet_v3_small")["params_non_trainable"] == 12_112  # 2 x 6,056 batchnorm channels (16 + 32 + 168 + … + 576)
    b0 = {r["name"]: r for r in report("efficientnet_b0", True)["layers"]}
    # squeeze width max(1, in / 4) of the block's input: 16 / 4 = 4 in stage2.0, 24 / 4 = 6 after
    assert b0["stage2.0.main.se.fc1"]["shape"] == ["N", 4, 1, 1]
    assert b0["stage2.rest.residual.main.se.fc1"]["shape"] == ["N", 6, 1, 1]
    assert b0["stage6.rest.2.residual.main.dw.conv"]["params"] == 1152 * 5 * 5
    # running mean + variance: 2 x (32 + 48 + 528 + 848 + 2,640 + 3,984 + 9,024 + 2,624 + 1,280) channels, by stage
    assert report("efficientnet_b0")["params_non_trainable"] == 42_016


def test_vit_b16_parts_and_macs():
    rows = {r["name"]: r for r in report("vit_b16", True)["layers"]}
    assert rows["class_token"]["params"] == 768 and rows["pos_embedding"]["params"] == 197 * 768
    assert rows["conv_proj"]["params"] == 768 * 3 * 16 * 16 + 768  # 590,592
    # one encoder block: 2 layernorms 2·1,536 + attention 4·768² + 4·768 = 2,362,368 + MLP 768·3072 + 3072
    # + 3072·768 + 768 = 4,722,432
    assert rows["encoder.11.self_attention"]["params"] == 2_362_368
    assert sum(r["params"] for n, r in rows.items() if n.startswith("encoder.0.")) == 7_087_872
    assert "encoder.12.ln_1" not in rows
    # per block, T = 197: Q, K, V, O 4·197·768² = 464,781,312, scores and context 2·197²·768 = 59,610,624,
    # MLP 2·197·768·3072 = 929,562,624; conv 196·768·768 = 115,605,504; head 768,000
    assert rows["encoder.0.self_attention"]["macs"] == 464_781_312 + 59_610_624
    assert report("vit_b16")["macs_total"] == 115_605_504 + 12 * 1_453_954_560 + 768_000 == 17_563_828_224
