"""Multi-head (self- or cross-) attention: a composite of matmuls, reshapes, transposes, a scale,
an optional causal mask and a softmax."""

from __future__ import annotations

import math

from ..errors import ShapeError
from pydantic import Field

from ..tensor import static
from .base import XAVIER, ZEROS, Composite, Param, PositiveInt, expect_rank, sample
from .elementwise import Add, Scale, Softmax
from .shape_ops import CausalMask, MatMul, Reshape, Transpose


class MultiHeadAttention(Composite):
    """Multi-head scaled dot-product attention, ``softmax(Q Kᵀ / √d_k) V`` per head, then ``· Wo + bo``.

    Inputs: ``x (N, T, D)`` (self-attention) or ``x_q (N, Tq, D), x_kv (N, Tk, D)`` (cross-attention);
    T and D static, ``d_k = D / heads``. ``Q = x_q Wq + bq``, ``K = x_kv Wk + bk``, ``V = x_kv Wv + bv``,
    each reshaped ``(N, T, heads, d_k)`` and transposed to ``(N, heads, T, d_k)`` (K to
    ``(N, heads, d_k, Tk)``); scores ``(N, heads, Tq, Tk)``; with ``causal`` the scores where key
    ``j > i`` are masked before the softmax (``causal_mask``). The context ``(N, heads, Tq, d_k)`` is
    transposed and reshaped back to ``(N, Tq, D)`` and projected. Parameters ``wq, wk, wv, wo (D, D)``
    (Xavier) and ``bq, bk, bv, bo (D,)`` (zeros): ``4D² + 4D``.
    """

    kind = "attention"
    summary = "A multi-head scaled dot-product attention with learnable projections."
    arity = (1, 2)
    heads: PositiveInt = Field(description="number of heads; must divide the model width D")
    causal: bool = Field(False, description="mask future positions (key j > query i), as in a decoder")
    bias: bool = Field(True, description="add learnable biases to the four projections")

    samples = (
        sample({"heads": 2}, (2, 3, 4)),
        sample({"heads": 2, "causal": True}, (2, 4, 4)),
        sample({"heads": 1, "bias": False}, (2, 3, 4), (2, 5, 4), note="cross-attention"),
    )

    def expand(self, b, name, inputs):
        xq = inputs[0]
        xkv = inputs[1] if len(inputs) > 1 else xq
        qt, kvt = b.type_of(xq), b.type_of(xkv)
        expect_rank(qt, 3, "attention query input (N, T, D)")
        expect_rank(kvt, 3, "attention key/value input (N, T, D)")
        d = static(qt.shape[2], "attention features D")
        if d % self.heads:
            raise ShapeError(f"attention features D = {d} is not divisible by heads = {self.heads}")
        if static(kvt.shape[2], "attention key/value features D") != d:
            raise ShapeError(f"attention key/value features {kvt.shape[2]} must equal query features {d}")
        tq = static(qt.shape[1], "attention query length T")
        tk = static(kvt.shape[1], "attention key/value length T")
        dk = d // self.heads

        def project(tag, x):
            w = b.param(name, f"w{tag}", Param((d, d), XAVIER))
            if not self.bias:
                return b.op(f"{name}/{tag}", MatMul(), [x, w])
            y = b.op(f"{name}/{tag}_matmul", MatMul(), [x, w])
            return b.op(f"{name}/{tag}", Add(), [y, b.param(name, f"b{tag}", Param((d,), ZEROS))])

        def split_heads(tag, y, t, perm):
            y = b.op(f"{name}/{tag}_split", Reshape(shape=(0, t, self.heads, dk)), [y])
            return b.op(f"{name}/{tag}_heads", Transpose(perm=perm), [y])

        q = split_heads("q", project("q", xq), tq, (0, 2, 1, 3))
        k = split_heads("k", project("k", xkv), tk, (0, 2, 3, 1))
        v = split_heads("v", project("v", xkv), tk, (0, 2, 1, 3))
        scores = b.op(f"{name}/scores", MatMul(), [q, k])
        scores = b.op(f"{name}/scaled", Scale(factor=1.0 / math.sqrt(dk)), [scores])
        if self.causal:
            scores = b.op(f"{name}/masked", CausalMask(), [scores])
        weights = b.op(f"{name}/weights", Softmax(axis=-1), [scores])
        context = b.op(f"{name}/context", MatMul(), [weights, v])
        context = b.op(f"{name}/context_t", Transpose(perm=(0, 2, 1, 3)), [context])
        context = b.op(f"{name}/merged", Reshape(shape=(0, tq, d)), [context])
        wo = b.param(name, "wo", Param((d, d), XAVIER))
        if not self.bias:
            return b.op(name, MatMul(), [context, wo])
        y = b.op(f"{name}/out_matmul", MatMul(), [context, wo])
        return b.op(name, Add(), [y, b.param(name, "bo", Param((d,), ZEROS))])


    def describe(self):
        return f"{self.heads} head{'s' if self.heads != 1 else ''}" + (" causal" if self.causal else "") + ("" if self.bias else " no bias")


OPS = (MultiHeadAttention,)
