"""The example specs in specs/: each compiles, and the published figures of the classic networks
(parameter counts, output shapes, MACs, receptive fields) come out exactly.

Every expected number below is a literal taken from the literature (Keras/torchvision summaries,
papers) or worked out by hand in the comment next to it; none is computed by graphc.
"""

from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

import graphc
from graphc.report import compile_report

ROOT = Path(__file__).parent.parent
SPECS = ROOT / "specs"
SPEC_FILES = sorted(SPECS.glob("*.yaml"))

EXPECTED_SPECS = {
    "mlp_digits", "keras_mnist_mlp", "lenet5", "vgg16", "resnet18", "resnet20_cifar", "inception_module",
    "mobilenet", "unet_small", "lstm_classifier", "transformer_encoder", "dilated_stack", "digits_cnn",
    "resnet50", "squeezenet1_1", "googlenet", "alexnet", "gru_classifier",
    "conv1d_sequence", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "gpt_decoder", "vit_b16",
}


@lru_cache(maxsize=None)
def compiled(stem: str):
    return graphc.compile_spec(SPECS / f"{stem}.yaml")


@lru_cache(maxsize=None)
def report(stem: str, expand: bool = False) -> dict:
    return compile_report(compiled(stem), expand=expand)


def row(stem: str, name: str, expand: bool = False) -> dict:
    rows = {r["name"]: r for r in report(stem, expand)["layers"]}
    assert name in rows, f"{stem}: no layer row '{name}' (have {sorted(rows)})"
    return rows[name]


def output_shape(stem: str, name: str | None = None) -> list:
    outs = report(stem)["outputs"]
    if name is None:
        assert len(outs) == 1, outs
        return outs[0]["shape"]
    return next(o["shape"] for o in outs if o["name"] == name)


def params_named(stem: str) -> set[str]:
    g = compiled(stem)
    return {n for n, a in g.nodes(data=True) if a["role"] == "param"}


# --- every spec ---------------------------------------------------------------------------------

def test_all_example_specs_are_present():
    assert {p.stem for p in SPEC_FILES} == EXPECTED_SPECS


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_spec_compiles_with_description_inputs_and_loss(path):
    rep = report(path.stem)
    assert rep["name"] == path.stem
    text = path.read_text()
    assert "\ndescription:" in text or text.startswith("description:")
    assert rep["layers"], "no layers"
    assert rep["outputs"], "no outputs"
    assert rep["loss"] is not None, "every example spec carries a loss"
    # the loss reads an int64 label or a float target input declared by the spec
    inputs = {i["name"]: i for i in rep["inputs"]}
    target = rep["loss"]["inputs"][-1]
    assert target in inputs, f"loss target '{target}' is not a graph input"
    assert inputs[target]["dtype"] in ("int64", "float32")
    assert inputs[target]["shape"][0] == "N"
    assert rep["params_trainable"] > 0
    assert rep["macs_total"] > 0


#: The only warnings expected, by spec: the layers whose windows leave input rows and columns unread,
#: each warned about twice (rows, cols). SqueezeNet 1.1's first 3x3/2 conv without padding leaves the
#: last row of 224 unread. ResNet's 1x1 stride-2 projection shortcut reads every other row by design
#: (as torchvision's): a regular subsampling, not warned about.
EXPECTED_WARNINGS = {
    "squeezenet1_1": ["conv1"],
}


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_spec_warnings_are_the_expected_unread_rows(path):
    warnings = report(path.stem)["warnings"]
    layers = sorted(w["message"].split("'")[1] for w in warnings)
    assert layers == sorted(2 * EXPECTED_WARNINGS.get(path.stem, [])), warnings
    assert all("never read" in w["message"] for w in warnings)


# --- the course's MLPs --------------------------------------------------------------------------

def test_mlp_digits():
    rep = report("mlp_digits")
    assert output_shape("mlp_digits") == ["N", 10]
    assert row("mlp_digits", "fc1")["params"] == 64 * 100 + 100  # 6,500
    assert row("mlp_digits", "fc2")["params"] == 100 * 10 + 10  # 1,010
    assert rep["params_total"] == 7_510
    assert rep["macs_total"] == 7_400  # 64*100 + 100*10


def test_keras_mnist_mlp_per_layer_params():
    rep = report("keras_mnist_mlp")
    assert [(r["name"], r["params"]) for r in rep["layers"] if r["op"] == "dense"] == [
        ("dense1", 392_500), ("dense2", 25_050), ("dense3", 510)]
    assert rep["params_total"] == 418_060
    assert rep["params_trainable"] == 418_060
    assert rep["params_non_trainable"] == 0
    assert output_shape("keras_mnist_mlp") == ["N", 10]
    assert rep["macs_total"] == 784 * 500 + 500 * 50 + 50 * 10  # 417,500


# --- convolutional classics ---------------------------------------------------------------------

def test_lenet5():
    rep = report("lenet5")
    assert rep["params_total"] == 61_706
    assert row("lenet5", "conv1")["shape"] == ["N", 6, 28, 28]
    assert row("lenet5", "pool1")["shape"] == ["N", 6, 14, 14]
    assert row("lenet5", "conv2")["shape"] == ["N", 16, 10, 10]
    assert row("lenet5", "flatten")["shape"] == ["N", 400]
    assert [row("lenet5", n)["params"] for n in ("conv1", "conv2", "fc1", "fc2", "fc3")] == [
        156, 2_416, 48_120, 10_164, 850]
    assert output_shape("lenet5") == ["N", 10]
    # 28*28*6*25 + 10*10*16*150 + 400*120 + 120*84 + 84*10
    assert rep["macs_total"] == 416_520


def test_vgg16_params_shapes_and_macs():
    rep = report("vgg16")
    assert rep["params_total"] == 138_357_544
    assert rep["params_trainable"] == 138_357_544
    assert output_shape("vgg16") == ["N", 1000]
    assert [row("vgg16", f"stage{i}")["shape"] for i in range(1, 6)] == [
        ["N", 64, 112, 112], ["N", 128, 56, 56], ["N", 256, 28, 28], ["N", 512, 14, 14], ["N", 512, 7, 7]]
    assert row("vgg16", "flatten")["shape"] == ["N", 25_088]
    assert row("vgg16", "fc6")["params"] == 102_764_544  # 25088*4096 + 4096
    # 13 convolutions, written with a repeated conv block
    convs = [r for r in report("vgg16", True)["layers"] if r["op"] == "conv2d"]
    assert len(convs) == 13
    assert "stage3.conv.2.conv.weight" in params_named("vgg16")
    # The published 15.47 G: conv and dense multiply-accumulates only, per 224x224 image.
    # conv: 15,346,630,656 (e.g. stage 1 = 224²·64·27 + 224²·64·576 = 1,936,392,192); dense:
    # 25088·4096 + 4096·4096 + 4096·1000 = 123,633,664.
    assert row("vgg16", "stage1")["macs"] == 1_936_392_192
    assert rep["macs_total"] == 15_470_264_320
    assert rep["flops_total"] == 30_940_528_640


def test_resnet18_params_match_torchvision():
    rep = report("resnet18")
    assert rep["params_trainable"] == 11_689_512  # torchvision resnet18: sum(p.numel() for p in parameters())
    # running_mean + running_var of 20 batchnorms: 2 x (64 + 4·64 + 128·5 + 256·5 + 512·5) = 2 x 4,800
    assert rep["params_non_trainable"] == 9_600
    assert rep["params_total"] == 11_699_112
    assert row("resnet18", "conv1")["params"] == 9_408  # 64·3·7·7, no bias
    assert row("resnet18", "fc")["params"] == 513_000


def test_resnet18_shapes_and_names():
    assert row("resnet18", "conv1")["shape"] == ["N", 64, 112, 112]
    assert row("resnet18", "maxpool")["shape"] == ["N", 64, 56, 56]
    assert row("resnet18", "layer1")["shape"] == ["N", 64, 56, 56]
    assert row("resnet18", "layer2")["shape"] == ["N", 128, 28, 28]
    assert row("resnet18", "layer3")["shape"] == ["N", 256, 14, 14]
    assert row("resnet18", "layer4")["shape"] == ["N", 512, 7, 7]
    assert row("resnet18", "avgpool")["shape"] == ["N", 512]
    assert output_shape("resnet18") == ["N", 1000]
    names = params_named("resnet18")
    for name in ("conv1.weight", "layer1.0.conv1.weight", "layer1.1.conv2.weight", "layer4.0.downsample_conv.weight",
                 "layer4.1.conv2.weight", "fc.weight", "fc.bias"):
        assert name in names, name
    assert "conv1.bias" not in names
    assert "layer1.0.downsample_conv.weight" not in names  # identity shortcut in layer1
    shortcut = row("resnet18", "layer2.0.downsample_conv", expand=True)
    assert shortcut["shape"] == ["N", 128, 28, 28]
    assert shortcut["params"] == 64 * 128
    assert shortcut["inputs"] == ["layer1"]


def test_resnet18_macs():
    # torchvision reports 1.81 GFLOPS (= multiply-accumulates) for resnet18. By hand: conv1 118,013,952
    # + layer1 4 x 115,605,504 + layers 2-4 each 57,802,752 + 3 x 115,605,504 + 6,422,528 (shortcut)
    # + fc 512,000 = 1,814,073,344.
    assert row("resnet18", "conv1")["macs"] == 118_013_952
    assert row("resnet18", "layer2")["macs"] == 411_041_792
    assert report("resnet18")["macs_total"] == 1_814_073_344


def test_resnet20_cifar():
    rep = report("resnet20_cifar")
    assert [row("resnet20_cifar", n)["shape"] for n in ("layer1", "layer2", "layer3", "avgpool")] == [
        ["N", 16, 32, 32], ["N", 32, 16, 16], ["N", 64, 8, 8], ["N", 64]]
    assert output_shape("resnet20_cifar") == ["N", 10]
    # 19 3x3 convs without bias: 432 + 6·2,304 + 4,608 + 5·9,216 + 18,432 + 5·36,864 = 267,696; projections
    # 16·32 + 32·64 = 2,560; batchnorm gamma + beta over 784 channels = 1,568; fc 650
    assert rep["params_trainable"] == 272_474
    assert rep["params_non_trainable"] == 1_568  # 2 x (16 + 6·16 + 7·32 + 7·64) = 2 x 784
    convs = [r for r in report("resnet20_cifar", True)["layers"] if r["op"] == "conv2d"]
    assert len(convs) == 19 + 2  # 1 + 3 stages x 3 blocks x 2, plus two projection shortcuts
    assert rep["macs_total"] == 40_813_184


def test_inception_module():
    assert row("inception_module", "inception3a")["shape"] == ["N", 256, 28, 28]
    assert row("inception_module", "inception3b")["shape"] == ["N", 480, 28, 28]
    concat = row("inception_module", "inception3a.concat", expand=True)
    assert concat["shape"] == ["N", 256, 28, 28]
    assert concat["inputs"] == ["inception3a.branch1", "inception3a.branch2", "inception3a.branch3", "inception3a.branch4"]
    assert row("inception_module", "inception3b.branch4_pool", expand=True)["shape"] == ["N", 256, 28, 28]
    assert output_shape("inception_module") == ["N", 10]
    # GoogLeNet table 1: 3a 128M and 3b 304M operations (MACs)
    assert row("inception_module", "inception3a")["macs"] == 128_049_152
    assert row("inception_module", "inception3b")["macs"] == 304_267_264
    # weights + biases: 3a 163,328 + 368, 3b 388,096 + 640
    assert row("inception_module", "inception3a")["params"] == 163_696
    assert row("inception_module", "inception3b")["params"] == 388_736
    assert report("inception_module")["params_total"] == 163_696 + 388_736 + 4_810


def test_mobilenet_depthwise_separable():
    rows = {r["name"]: r for r in report("mobilenet", True)["layers"]}
    dw = rows["ds2.dw"]
    assert dw["shape"] == ["N", 64, 24, 24]
    assert dw["params"] == 64 * 3 * 3  # groups = channels: one 3x3 filter per channel
    assert dw["macs"] == 64 * 9 * 24 * 24
    assert rows["ds2.pw"]["params"] == 64 * 128
    assert rows["ds7.1.pw"]["shape"] == ["N", 512, 6, 6]
    assert row("mobilenet", "ds8")["shape"] == ["N", 1024, 3, 3]
    assert output_shape("mobilenet") == ["N", 10]
    rep = report("mobilenet")
    assert rep["params_trainable"] == 1_348_938
    assert rep["params_non_trainable"] == 11_648  # 2 x 5,824 batchnorm channels
    assert rep["macs_total"] == 65_955_328


def test_unet_small():
    assert row("unet_small", "bottleneck")["shape"] == ["N", 128, 8, 8]
    assert row("unet_small", "up3")["shape"] == ["N", 64, 16, 16]
    assert row("unet_small", "up3")["inputs"] == ["bottleneck", "enc3"]
    assert row("unet_small", "up3.concat", expand=True)["shape"] == ["N", 128, 16, 16]
    assert row("unet_small", "up3.upconv", expand=True)["params"] == 128 * 64 * 4 + 64
    assert output_shape("unet_small") == ["N", 1, 64, 64]
    rep = report("unet_small")
    assert rep["loss"]["op"] == "sigmoid_cross_entropy"
    assert {"name": "mask", "shape": ["N", 1, 64, 64], "dtype": "float32"} in rep["inputs"]
    assert rep["params_total"] == 481_745
    assert rep["macs_total"] == 143_785_984


def test_lstm_classifier():
    assert row("lstm_classifier", "lstm")["shape"] == ["N", 32]
    assert row("lstm_classifier", "lstm")["params"] == 4 * 32 * (16 + 32) + 4 * 32  # 6,272
    assert output_shape("lstm_classifier") == ["N", 5]
    assert report("lstm_classifier")["params_total"] == 6_272 + 165
    # x_t·Wx for 20 steps (20·16·128) + h·Wh for 19 steps (h_{-1} = 0 is not multiplied: 19·32·128)
    assert row("lstm_classifier", "lstm")["macs"] == 118_784


def test_gru_classifier():
    # torch.nn.GRU(8, 16, num_layers=2) has 3·16·(8 + 16) + 6·16 + 3·16·(16 + 16) + 6·16 = 2,880 parameters
    assert row("gru_classifier", "gru1")["shape"] == ["N", 12, 16]
    assert row("gru_classifier", "gru1")["params"] == 3 * 16 * (8 + 16) + 6 * 16 == 1_248
    assert row("gru_classifier", "gru2")["params"] == 3 * 16 * (16 + 16) + 6 * 16 == 1_632
    assert output_shape("gru_classifier") == ["N", 4]
    assert report("gru_classifier")["params_total"] == 2_880 + 68
    # x_t·Wx for 12 steps and h·Wh for 11 (h_{-1} = 0 is not multiplied): 12·8·48 + 11·16·48
    assert row("gru_classifier", "gru1")["macs"] == 13_056


def test_conv1d_sequence_shapes_params_and_1d_receptive_fields():
    assert [row("conv1d_sequence", n)["shape"] for n in ("c1", "p1", "c2", "p2", "c3", "gap")] == [
        ["N", 16, 64], ["N", 16, 32], ["N", 32, 32], ["N", 32, 16], ["N", 32, 16], ["N", 32, 1]]
    # conv1d weights (O, C/g, k) as PyTorch's nn.Conv1d: 16·4·5 + 16, 32·16·3 + 32, 32·32·3 + 32, then 32·5 + 5
    assert report("conv1d_sequence")["params_total"] == 336 + 1_568 + 3_104 + 165
    assert row("conv1d_sequence", "c2")["macs"] == 32 * 32 * 16 * 3
    # r' = r + (e − 1)·j, j' = j·s along L: 5, 6, 6 + 4·2, 14 + 2·2, 18 + 2·4 (the causal conv adds 2·4 of padding)
    fields = {n: row("conv1d_sequence", n)["receptive_field"] for n in ("c1", "p1", "c2", "p2", "c3")}
    assert {n: (f["size"], f["stride"], f["padding"]) for n, f in fields.items()} == {
        "c1": ([5], [1], [2]), "p1": ([6], [2], [2]), "c2": ([14], [2], [6]), "p2": ([18], [4], [8]), "c3": ([26], [4], [16])}
    assert row("conv1d_sequence", "c3")["attributes"]["padding_resolved"] == [2, 0]
    assert row("conv1d_sequence", "c2")["attributes"]["padding_resolved"] == [2, 2]


def test_transformer_encoder():
    assert output_shape("transformer_encoder") == ["N", 16, 64]
    rows = {r["name"]: r for r in report("transformer_encoder", True)["layers"]}
    assert rows["encoder.0.attn"]["params"] == 4 * 64 * 64 + 4 * 64  # 16,640
    assert rows["encoder.1.ff1"]["shape"] == ["N", 16, 256]
    assert rows["encoder.1.norm2"]["shape"] == ["N", 16, 64]
    rep = report("transformer_encoder")
    # per encoder: attention 16,640 + 2 layernorms 256 + ff 16,640 + 16,448 = 49,984
    assert rep["params_total"] == 2 * 49_984
    assert rep["loss"]["op"] == "mse"
    assert {"name": "target", "shape": ["N", 16, 64], "dtype": "float32"} in rep["inputs"]
    # per encoder: Q,K,V,O projections 4·16·64·64 + scores and context 2·4·16·16·16 + ff 2·16·64·256
    assert rep["macs_total"] == 2 * (262_144 + 32_768 + 524_288)


def test_gpt_decoder():
    rep = report("gpt_decoder")
    assert output_shape("gpt_decoder") == ["N", 16, 64]
    assert {"name": "next_tokens", "shape": ["N", 16], "dtype": "int64"} in rep["inputs"]
    rows = {r["name"]: r for r in report("gpt_decoder", True)["layers"]}
    assert rows["wpe"]["shape"] == [1, 16, 32] and rows["wpe"]["params"] == 16 * 32
    assert rows["embed"]["shape"] == ["N", 16, 32]
    assert rows["blocks.1.attn"]["op"] == "attention" and rows["blocks.1.attn"]["attributes"]["causal"] is True
    assert rows["blocks.0.fc"]["shape"] == ["N", 16, 128]
    assert rows["lm_head"]["params"] == 32 * 64  # no bias
    # token table 64·32 + positions 16·32 + 2 blocks × (2 layernorms 128 + attention 4·32² + 4·32 = 4,224
    # + fc 32·128 + 128 = 4,224 + proj 128·32 + 32 = 4,128) + final layernorm 64 + head 2,048
    assert rep["params_trainable"] == 2_048 + 512 + 2 * 12_704 + 64 + 2_048 == 30_080
    # per block: Q,K,V,O 4·16·32² = 65,536 + scores and context 2·16²·32 = 16,384 (all T² pairs: the causal
    # mask does not skip the masked half) + MLP 2·16·32·128 = 131,072; head 16·32·64 = 32,768
    assert rep["macs_total"] == 2 * (65_536 + 16_384 + 131_072) + 32_768 == 458_752


def test_dilated_stack_receptive_field():
    sizes = [row("dilated_stack", f"ctx{i}")["receptive_field"]["size"] for i in range(1, 5)]
    assert sizes == [[3, 3], [7, 7], [15, 15], [31, 31]]  # 1 + 2·(1 + 2 + 4 + 8) = 31
    rf = row("dilated_stack", "classifier")["receptive_field"]
    assert rf == {"size": [31, 31], "stride": [1, 1], "padding": [15, 15]}
    assert row("dilated_stack", "classifier")["shape"] == ["N", 10, 64, 64]
    assert output_shape("dilated_stack") == ["N", 10]
    assert row("dilated_stack", "gap")["receptive_field"] is None
    assert report("dilated_stack")["params_total"] == 896 + 3 * 9_248 + 330


# --- the real CLI -------------------------------------------------------------------------------

@pytest.mark.parametrize("stem, params, out_shape", [
    ("keras_mnist_mlp", 418_060, ["N", 10]),
    ("resnet18", 11_699_112, ["N", 1000]),
])
def test_cli_compile_json(stem, params, out_shape):
    proc = subprocess.run(["graphc", "compile", str(SPECS / f"{stem}.yaml"), "--json"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for key in ("params_total", "params_trainable", "macs_total", "outputs", "layers"):
        assert key in data, key
    assert data["params_total"] == params
    assert [o["shape"] for o in data["outputs"]] == [out_shape]
    assert data["layers"]
    for layer in data["layers"]:
        for key in ("name", "op", "inputs", "shape", "params", "macs", "receptive_field"):
            assert key in layer, (layer.get("name"), key)
