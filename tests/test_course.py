"""The course's worked examples on convolution arithmetic, pooling and receptive fields."""

import pytest
from helpers import layer, report_of

from graphc.errors import GraphcError


def test_ten_5x5_filters_pad_2_keep_32x32_with_760_params():
    r = report_of("""
        inputs: {x: {shape: [N, 3, 32, 32]}}
        layers: [{name: conv, op: conv2d, filters: 10, kernel: 5, stride: 1, padding: 2}]
    """)
    conv = layer(r, "conv")
    assert conv["shape"] == ["N", 10, 32, 32]
    assert conv["params"] == 760  # 10 · (5·5·3 + 1)
    assert conv["macs"] == 10 * 32 * 32 * 5 * 5 * 3


def test_7x7_input_3x3_filter_stride_3_does_not_tile():
    r = report_of("""
        inputs: {x: {shape: [1, 1, 7, 7]}}
        layers: [{name: conv, op: conv2d, filters: 1, kernel: 3, stride: 3}]
    """)
    messages = [w["message"] for w in r["warnings"]]
    assert len(messages) == 2  # rows and cols
    assert "do not tile" in messages[0] and "7/3" in messages[0] and "last 1 input row" in messages[0]
    assert layer(r, "conv")["shape"] == [1, 1, 2, 2]


def test_stride_that_tiles_gives_no_warning():
    r = report_of("""
        inputs: {x: {shape: [1, 1, 7, 7]}}
        layers: [{name: conv, op: conv2d, filters: 1, kernel: 3, stride: 2}]
    """)
    assert r["warnings"] == []
    assert layer(r, "conv")["shape"] == [1, 1, 3, 3]


def test_two_stacked_3x3_convs_see_5x5():
    r = report_of("""
        inputs: {x: {shape: [N, 1, 16, 16]}}
        layers:
          - {name: a, op: conv2d, filters: 4, kernel: 3, padding: 1}
          - {name: b, op: conv2d, filters: 4, kernel: 3, padding: 1}
    """)
    assert layer(r, "a")["receptive_field"] == {"size": [3, 3], "stride": [1, 1], "padding": [1, 1]}
    assert layer(r, "b")["receptive_field"] == {"size": [5, 5], "stride": [1, 1], "padding": [2, 2]}


def test_2x2_max_pool_stride_2_on_4x4_gives_2x2():
    r = report_of("""
        inputs: {x: {shape: [N, 3, 4, 4]}}
        layers: [{name: pool, op: maxpool2d, kernel: 2, stride: 2}]
    """)
    assert layer(r, "pool")["shape"] == ["N", 3, 2, 2]
    assert layer(r, "pool")["receptive_field"] == {"size": [2, 2], "stride": [2, 2], "padding": [0, 0]}


def test_conv_output_below_one_shows_the_arithmetic():
    with pytest.raises(GraphcError) as e:
        report_of("""
            inputs: {x: {shape: [N, 3, 4, 4]}}
            layers: [{name: conv3, op: conv2d, filters: 8, kernel: 7}]
        """)
    (d,) = e.value.diagnostics
    assert "conv3" in d.message and "floor((4 + 0 − 7)/1) + 1 = −2" in d.message
    assert (d.loc.line, d.loc.col) == (3, 10)  # the layer entry


def test_same_padding_with_stride_2_gives_ceil_n_over_s():
    r = report_of("""
        inputs: {x: {shape: [N, 3, 7, 8]}}
        layers: [{name: c, op: conv2d, filters: 2, kernel: 3, stride: 2, padding: same}]
    """)
    assert layer(r, "c")["shape"] == ["N", 2, 4, 4]


def test_dilation_enters_as_d_times_k_minus_1_plus_1():
    r = report_of("""
        inputs: {x: {shape: [N, 1, 32, 32]}}
        layers:
          - {name: a, op: conv2d, filters: 1, kernel: 3, dilation: 2, padding: 2}
          - {name: b, op: conv2d, filters: 1, kernel: 3, dilation: 4, padding: 4}
    """)
    assert layer(r, "a")["receptive_field"]["size"] == [5, 5]
    assert layer(r, "b")["receptive_field"]["size"] == [13, 13]
    assert layer(r, "b")["shape"] == ["N", 1, 32, 32]


def test_transposed_conv_and_upsample_give_fractional_strides():
    r = report_of("""
        inputs: {x: {shape: [N, 1, 32, 32]}}
        layers:
          - {name: down, op: conv2d, filters: 2, kernel: 2, stride: 2}
          - {name: up, op: conv_transpose2d, filters: 2, kernel: 2, stride: 2}
          - {name: up2, op: upsample, scale: 2}
    """)
    assert layer(r, "down")["receptive_field"] == {"size": [2, 2], "stride": [2, 2], "padding": [0, 0]}
    # a 2×2/2 transposed conv after a 2×2/2 conv: each output pixel comes from one input window again
    assert layer(r, "up")["receptive_field"] == {"size": [2, 2], "stride": [1, 1], "padding": [0, 0]}
    assert layer(r, "up")["shape"] == ["N", 2, 32, 32]
    assert layer(r, "up2")["receptive_field"]["stride"] == [0.5, 0.5]
    assert layer(r, "up2")["shape"] == ["N", 2, 64, 64]


def test_merge_takes_the_union_of_branch_fields():
    r = report_of("""
        inputs: {x: {shape: [N, 4, 16, 16]}}
        layers:
          - {name: a, op: conv2d, filters: 4, kernel: 5, padding: 2}
          - {name: b, op: conv2d, filters: 4, kernel: 1, inputs: [x]}
          - {name: sum, op: add, inputs: [a, b]}
    """)
    assert layer(r, "sum")["receptive_field"] == {"size": [5, 5], "stride": [1, 1], "padding": [2, 2], "size_min": [1, 1]}


def test_misaligned_merge_is_rejected():
    # both branches give 8×8, but one has downsampled by 2 and the other not at all
    with pytest.raises(GraphcError) as e:
        report_of("""
            inputs: {x: {shape: [N, 4, 15, 15]}}
            layers:
              - {name: a, op: conv2d, filters: 4, kernel: 3, stride: 2, padding: 1}
              - {name: b, op: conv2d, filters: 4, kernel: 8, inputs: [x]}
              - {name: sum, op: add, inputs: [a, b]}
        """)
    assert "'sum' merges misaligned receptive fields" in str(e.value)
