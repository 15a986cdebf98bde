"""Shape ops: flatten, reshape, transpose, concat, matmul, select, stack, slice, causal mask and the
sinusoidal positional encoding. None of them has parameters; only matmul costs MACs."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction
from functools import lru_cache

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..errors import ShapeError
from ..tensor import Shape, TensorType, broadcast, fmt_shape, static
from .base import IDENTITY_WINDOW, IntTuple, Op, PositiveInt, Window, expect_float, expect_rank, sample

#: What the causal mask writes above the diagonal: large and negative, so that softmax gives ~0
#: there, but finite, so that a fully masked row stays a number and ONNX needs no infinities.
MASK_FILL = -1e9


def norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    """``axis`` in ``[−rank, rank)`` as a non-negative index."""
    if not -rank <= axis < rank:
        raise ShapeError(f"{what} {axis} is out of range for rank {rank} (expected {-rank} ≤ axis < {rank})")
    return axis % rank


def count_text(shape: Shape) -> str:
    """Element count written out, symbolic dims kept: ``N·48`` or ``48``."""
    symbols = [d for d in shape if isinstance(d, str)]
    size = math.prod(d for d in shape if isinstance(d, int))
    return "·".join(symbols + ([str(size)] if size != 1 or not symbols else []))


def same_dims(a, b) -> bool:
    """Dims agree when they are equal ints or the same symbol."""
    return a == b and type(a) is type(b)


class Flatten(Op):
    """Flatten into a matrix (ONNX ``Flatten``): ``(d0, …, d_{a−1}, d_a, …) → (d0·…·d_{a−1}, d_a·…·d_last)``.

    With the default ``axis = 1``: ``(N, C, H, W) → (N, C·H·W)``; a symbolic batch passes through.
    The dims from ``axis`` on must be static; dims before it must be static unless there is just one.
    """

    kind = "flatten"
    summary = "A flattening of all dims from axis on into one, giving a matrix."
    axis: int = Field(1, description="the first dim of the second factor: (d0…d_{axis−1}) × (d_axis…)")

    samples = (
        sample({}, (2, 3, 4, 4)),
        sample({"axis": 2}, (2, 3, 4)),
        sample({}, ("N", 3, 2, 2), note="symbolic batch"),
    )

    def infer(self, xs):
        x = xs[0]
        if not -x.rank <= self.axis <= x.rank:
            raise ShapeError(f"flatten axis {self.axis} is out of range for input {x} of rank {x.rank}")
        axis = self.axis + x.rank if self.axis < 0 else self.axis
        head, tail = x.shape[:axis], x.shape[axis:]
        inner = math.prod(static(d, f"flatten input dim {axis + i} of {x}") for i, d in enumerate(tail))
        if len(head) == 1:
            outer = head[0]
        else:
            outer = math.prod(static(d, f"flatten input dim {i} of {x}") for i, d in enumerate(head))
        return x.with_shape((outer, inner))

    def window(self, xs):
        return None

    def forward(self, x):
        axis = self.axis + x.ndim if self.axis < 0 else self.axis
        return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


    def onnx(self, ctx, xs, y):
        ctx.node("Flatten", xs, y, axis=self.axis)

    def vjp(self, g, xs, y, gy):
        return (g.op(ReshapeLike(), [gy, xs[0]], "dx"),)

    def describe(self):
        return f"axis {self.axis}" if self.axis != 1 else ""


class Reshape(Op):
    """Reshape with ONNX semantics: ``0`` copies the input dim at that position (this is how a
    symbolic batch passes through), one ``−1`` is inferred from the element count, every other entry
    is the new size. ``(N, 12, 4)`` with shape ``(0, −1, 2, 4)`` gives ``(N, 6, 2, 4)``.
    The element counts of input and output must be equal; the data order (row-major) is unchanged.
    """

    kind = "reshape"
    summary = "A reshape with ONNX semantics (0 copies a dim, −1 is inferred)."
    shape: IntTuple = Field(description="the new shape: sizes, 0 to copy the input's dim, one −1 to infer")

    samples = (
        sample({"shape": (0, -1)}, (2, 3, 4)),
        sample({"shape": (0, 2, 3, 2)}, (2, 12)),
        sample({"shape": (0, 3, 2, 2)}, ("N", 3, 4), note="symbolic batch kept by 0"),
    )

    @field_validator("shape")
    @classmethod
    def _check_shape(cls, shape):
        if any(s < -1 for s in shape):
            raise ValueError(f"reshape sizes must be positive, 0 (copy) or −1 (infer), got {shape}")
        if list(shape).count(-1) > 1:
            raise ValueError(f"at most one −1 may be inferred, got {shape}")
        return shape

    def infer(self, xs):
        x = xs[0]
        out: list = []
        for i, s in enumerate(self.shape):
            if s == 0:
                if i >= x.rank:
                    raise ShapeError(f"reshape shape {fmt_shape(self.shape)} copies dim {i} with 0 but the input {x} has rank {x.rank}")
                out.append(x.shape[i])
            else:
                out.append(s)
        in_size = math.prod(d for d in x.shape if isinstance(d, int))
        out_size = math.prod(d for d in out if isinstance(d, int) and d != -1)
        left = Counter(d for d in x.shape if isinstance(d, str)) - Counter(d for d in out if isinstance(d, str))

        def mismatch(reason: str) -> ShapeError:
            return ShapeError(f"cannot reshape {x} ({count_text(x.shape)} elements) to {fmt_shape(out)} "
                              f"({count_text([d for d in out if d != -1])} elements{' and a −1' if -1 in out else ''}): {reason}")

        if -1 in out:
            if left:
                symbols = sorted(left.elements())
                if len(symbols) != 1 or in_size != out_size:
                    raise mismatch(f"symbolic dims {symbols} must be kept with 0")
                inferred = symbols[0]
            else:
                if out_size == 0 or in_size % out_size:
                    raise mismatch(f"{in_size} is not divisible by {out_size}")
                inferred = in_size // out_size
            out[out.index(-1)] = inferred
        elif left:
            raise mismatch(f"symbolic dims {sorted(left.elements())} must be kept with 0")
        elif in_size != out_size:
            raise mismatch(f"{in_size} ≠ {out_size}")
        return x.with_shape(out)

    def window(self, xs):
        return None

    def forward(self, x):
        return x.reshape(tuple(x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)))


    def onnx(self, ctx, xs, y):
        # ONNX Reshape (allowzero = 0) has our semantics: 0 copies the input dim, one −1 is inferred
        ctx.node("Reshape", [xs[0], ctx.ints(self.shape)], y)

    def vjp(self, g, xs, y, gy):
        return (g.op(ReshapeLike(), [gy, xs[0]], "dx"),)

    def describe(self):
        return fmt_shape(self.shape)


class ReshapeLike(Op):
    """Reshape ``x`` to the shape of ``like`` (read at run time; ``like`` gives only its shape):
    ``y = reshape(x, shape(like))``, row-major order unchanged. The gradient of flatten and reshape,
    exact with symbolic dims. ``like`` gets no gradient.
    """

    kind = "reshape_like"
    arity = (2, 2)
    user_facing = False

    samples = (
        sample({}, (2, 12), (2, 3, 4)),
        sample({}, ("N", 6, 2), ("N", 3, 4), note="symbolic batch"),
    )

    def infer(self, xs):
        x, like = xs
        x_sym = Counter(d for d in x.shape if isinstance(d, str))
        like_sym = Counter(d for d in like.shape if isinstance(d, str))
        x_size = math.prod(d for d in x.shape if isinstance(d, int))
        like_size = math.prod(d for d in like.shape if isinstance(d, int))
        if x_sym != like_sym or x_size != like_size:
            raise ShapeError(f"cannot reshape {x} ({count_text(x.shape)} elements) like {like} ({count_text(like.shape)} elements)")
        return TensorType(tuple(like.shape), x.dtype)

    def window(self, xs):
        return None

    def forward(self, x, like):
        return x.reshape(like.shape)


    def onnx(self, ctx, xs, y):
        ctx.node("Reshape", [xs[0], ctx.node("Shape", [xs[1]], hint="like_shape")], y)

    def vjp(self, g, xs, y, gy):
        return g.op(ReshapeLike(), [gy, xs[0]], "dx"), None


class Transpose(Op):
    """Permute the axes: ``y.shape[i] = x.shape[perm[i]]``, ``y[i_0, …] = x[…]`` with ``i_k`` at axis ``perm[k]``.
    ``perm = (0, 2, 1, 3)`` turns ``(N, T, heads, d_k)`` into ``(N, heads, T, d_k)``.
    """

    kind = "transpose"
    summary = "A permutation of the axes of a tensor."
    perm: IntTuple = Field(description="output axis i is input axis perm[i]; a permutation of 0…rank−1")

    samples = (
        sample({"perm": (0, 2, 1, 3)}, (2, 3, 4, 5)),
        sample({"perm": (1, 0)}, (3, 4)),
        sample({"perm": (0, 2, 1)}, ("N", 3, 4), note="symbolic batch"),
        sample({"perm": (1, 2, 0)}, (2, 3, 4), note="not its own inverse"),
    )

    @field_validator("perm")
    @classmethod
    def _check_perm(cls, perm):
        if sorted(perm) != list(range(len(perm))):
            raise ValueError(f"perm must be a permutation of 0…{len(perm) - 1}, got {perm}")
        return perm

    def infer(self, xs):
        x = xs[0]
        if len(self.perm) != x.rank:
            raise ShapeError(f"transpose perm {fmt_shape(self.perm)} has {len(self.perm)} axes but the input {x} has rank {x.rank}")
        return x.with_shape(x.shape[p] for p in self.perm)

    def window(self, xs):
        if xs[0].rank == 4 and self.perm[2:] == (2, 3):
            return (IDENTITY_WINDOW, IDENTITY_WINDOW)
        return None

    def forward(self, x):
        return np.transpose(x, self.perm)


    def onnx(self, ctx, xs, y):
        ctx.node("Transpose", xs, y, perm=list(self.perm))

    def vjp(self, g, xs, y, gy):
        inverse = tuple(int(i) for i in np.argsort(self.perm))
        return (g.op(Transpose(perm=inverse), [gy], "dx"),)

    def describe(self):
        return fmt_shape(self.perm)


class Concat(Op):
    """Join the inputs along ``axis``: ``y.shape[axis] = Σ x_k.shape[axis]``, every other dim equal
    (symbolic dims must be the same symbol). NCHW channel concatenation is ``axis = 1``.

    With ``broadcast: true`` a size-1 dim of an input other than ``axis`` is repeated to the others'
    size first (NumPy broadcasting of every dim but the axis): ViT's learned class token (1, 1, D)
    joins the (N, T, D) patch tokens as torchvision's ``cat([class_token.expand(N, −1, −1), x], 1)``.
    A broadcast input's gradient is its slice of ``gy`` summed over the repeated dims; ONNX repeats
    it with ``Expand`` to the output's shape but for the axis, a symbolic dim read at run
    time (``Shape``), so a symbolic batch stays symbolic.
    """

    kind = "concat"
    summary = "A concatenation of two or more tensors along one axis."
    arity = (2, None)
    axis: int = Field(1, description="the axis joined along (1: NCHW channels)")
    broadcast: bool = Field(False, description="repeat size-1 dims (other than the axis) to the other inputs' size "
                                               "(a (1, 1, D) class token joining (N, T, D) tokens)")

    samples = (
        sample({}, (2, 3, 4, 4), (2, 5, 4, 4)),
        sample({"axis": -1}, (2, 3), (2, 4), (2, 1)),
        sample({}, ("N", 2, 3), ("N", 1, 3), note="symbolic batch"),
        sample({"broadcast": True}, (1, 1, 4), (3, 2, 4), note="a class token broadcast over the batch"),
        sample({"broadcast": True}, (1, 1, 4), ("N", 2, 4), note="over a symbolic batch"),
        sample({"axis": 0, "broadcast": True}, (2, 3, 1), (1, 1, 1), (1, 3, 5), note="broadcast in two dims"),
    )

    def _others(self, xs) -> tuple[int, Shape]:
        """(axis, the common shape of every dim but the axis, which holds 1 there)."""
        x0 = xs[0]
        axis = norm_axis(self.axis, x0.rank, "concat axis")
        for k, x in enumerate(xs[1:], 1):
            if x.dtype != x0.dtype:
                raise ShapeError(f"concat input {k} has dtype {x.dtype} but input 0 has {x0.dtype}")
            if x.rank != x0.rank:
                raise ShapeError(f"concat input {k} {x} has rank {x.rank} but input 0 {x0} has rank {x0.rank}")
            if not self.broadcast:
                for i, (a, b) in enumerate(zip(x0.shape, x.shape)):
                    if i != axis and not same_dims(a, b):
                        hint = "; 'broadcast: true' repeats a size-1 dim" if 1 in (a, b) else ""
                        raise ShapeError(f"concat along axis {axis}: input {k} {x} differs from input 0 {x0} at axis {i} "
                                         f"({b} ≠ {a}){hint}")
        if not self.broadcast:
            return axis, x0.shape[:axis] + (1,) + x0.shape[axis + 1:]
        try:
            return axis, broadcast(*(x.shape[:axis] + (1,) + x.shape[axis + 1:] for x in xs))
        except ShapeError as e:
            raise ShapeError(f"concat along axis {axis} with broadcast: the other dims do not broadcast ({e})") from None

    def infer(self, xs):
        axis, others = self._others(xs)
        total = sum(static(x.shape[axis], f"concat input {k} dim {axis}") for k, x in enumerate(xs))
        return xs[0].with_shape(others[:axis] + (total,) + others[axis + 1:])

    def window(self, xs):
        if xs[0].rank == 4 and norm_axis(self.axis, 4) >= 2:
            return None
        return super().window(xs)

    def forward(self, *xs):
        if self.broadcast:
            axis = self.axis % xs[0].ndim
            others = np.broadcast_shapes(*(x.shape[:axis] + (1,) + x.shape[axis + 1:] for x in xs))
            xs = [np.broadcast_to(x, others[:axis] + (x.shape[axis],) + others[axis + 1:]) for x in xs]
        return np.concatenate(xs, axis=self.axis)

    def onnx(self, ctx, xs, y):
        types = [ctx.type_of(x) for x in xs]
        axis = norm_axis(self.axis, types[0].rank, "concat axis")
        out = ctx.type_of(y).shape
        wide = [t.shape[:axis] + t.shape[axis + 1:] != out[:axis] + out[axis + 1:] for t in types]
        if any(wide):
            # the output's shape with 1 at the axis (Expand keeps each input's own axis size): static dims as
            # constants, a symbolic one read at run time from an input that has it
            def dim(i):
                if i == axis or isinstance(out[i], int):
                    return ctx.ints([1 if i == axis else out[i]], hint="dim")
                full = next(x for x, t in zip(xs, types) if same_dims(t.shape[i], out[i]))
                return ctx.node("Shape", [full], hint="dim", start=i, end=i + 1)
            target = ctx.node("Concat", [dim(i) for i in range(len(out))], hint="target", axis=0)
            xs = [ctx.node("Expand", [x, target], hint="expanded") if w else x for x, w in zip(xs, wide)]
        ctx.node("Concat", xs, y, axis=axis)

    def vjp(self, g, xs, y, gy):
        """Each input's cotangent is its own slice of ``gy`` along the axis, summed over broadcast dims."""
        types = [g.type_of(x) for x in xs]
        axis = norm_axis(self.axis, types[0].rank, "concat axis")
        grads, start = [], 0
        for i, t in enumerate(types):
            end = start + t.shape[axis]
            if g.needs(i):
                part = g.op(Slice(axis=axis, start=start, end=end), [gy], f"d{i}")
                grads.append(g.sum_to(part, xs[i], f"d{i}_sum") if self.broadcast else part)
            else:
                grads.append(None)
            start = end
        return tuple(grads)

    def describe(self):
        text = f"axis {self.axis}" if self.axis != 1 else ""
        return (text + " broadcast").strip() if self.broadcast else text


class MatMul(Op):
    """Matrix product with NumPy ``matmul`` semantics for rank ≥ 2: ``a (…, M, K) · b (…, K, P) → (…, M, P)``,
    ``y[…, m, p] = Σ_k a[…, m, k] · b[…, k, p]``; the batch dims ``…`` broadcast. ``transpose_a`` /
    ``transpose_b`` use ``aᵀ`` / ``bᵀ`` (the last two axes swapped) instead, as ONNX Gemm's transA/transB:
    the gradients use them, so no transpose is a node of its own.
    MACs per example: ``prod(batch) · M · K · P`` (symbolic dims count as 1).
    """

    kind = "matmul"
    summary = "A matrix product of two tensors with NumPy matmul semantics (batch dims broadcast)."
    arity = (2, 2)
    transpose_a: bool = Field(False, description="use the first input with its last two axes swapped")
    transpose_b: bool = Field(False, description="use the second input with its last two axes swapped")

    samples = (
        sample({}, (3, 4), (4, 5)),
        sample({}, (2, 3, 4), (4, 5), note="broadcast weight"),
        sample({}, (2, 2, 3, 4), (2, 2, 4, 3), note="batched heads"),
        sample({"transpose_a": True}, (2, 4, 3), (4, 5), note="aᵀ"),
        sample({"transpose_b": True}, (3, 4), (2, 5, 4), note="bᵀ"),
        sample({"transpose_a": True, "transpose_b": True}, (4, 3), (5, 4), note="aᵀ bᵀ"),
    )

    def _operands(self, a: TensorType, b: TensorType) -> tuple[TensorType, TensorType]:
        def swapped(x, flag):
            return x.with_shape(x.shape[:-2] + (x.shape[-1], x.shape[-2])) if flag else x
        return swapped(a, self.transpose_a), swapped(b, self.transpose_b)

    def infer(self, xs):
        for x, what in ((xs[0], "a (…, M, K)"), (xs[1], "b (…, K, P)")):
            if x.rank < 2:
                raise ShapeError(f"matmul input {what} must have rank ≥ 2, got shape {x}")
        a, b = self._operands(*xs)
        expect_float(a, "matmul input a")
        if a.dtype != b.dtype:
            raise ShapeError(f"matmul inputs have different dtypes {a.dtype} and {b.dtype}")
        if not same_dims(a.shape[-1], b.shape[-2]):
            raise ShapeError(f"matmul inner dims do not match: a {a} has K = {a.shape[-1]} but b {b} has K = {b.shape[-2]}")
        try:
            batch = broadcast(a.shape[:-2], b.shape[:-2])
        except ShapeError as err:
            raise ShapeError(f"matmul batch dims of a {a} and b {b} do not broadcast: {err}") from None
        return a.with_shape(batch + (a.shape[-2], b.shape[-1]))

    def window(self, xs):
        return None

    def macs(self, xs, y):
        k = self._operands(*xs)[0].shape[-1]
        return y.numel() * (k if isinstance(k, int) else 1)

    def describe(self):
        return " ".join(f"{n}ᵀ" for n, flag in (("a", self.transpose_a), ("b", self.transpose_b)) if flag)

    def forward(self, a, b):
        return np.matmul(a.swapaxes(-1, -2) if self.transpose_a else a, b.swapaxes(-1, -2) if self.transpose_b else b)

    def onnx(self, ctx, xs, y):
        def operand(x, flag, hint):
            if not flag:
                return x
            rank = ctx.type_of(x).rank
            return ctx.node("Transpose", [x], hint=hint, perm=list(range(rank - 2)) + [rank - 1, rank - 2])
        ctx.node("MatMul", [operand(xs[0], self.transpose_a, "a_t"), operand(xs[1], self.transpose_b, "b_t")], y)

    def vjp(self, g, xs, y, gy):
        """With ``A = aᵀ or a`` and ``B = bᵀ or b`` as the flags say: ``gA = gy · Bᵀ``, ``gB = Aᵀ · gy``,
        transposed back for a transposed operand (``ga = B · gyᵀ`` when ``transpose_a``, ``gb = gyᵀ · A``
        when ``transpose_b``), each summed over broadcast batch dims."""
        a, b = xs
        ta, tb = self.transpose_a, self.transpose_b
        ga = gb = None
        if g.needs(0):
            full = (g.op(MatMul(transpose_a=tb, transpose_b=True), [b, gy], "d0_full") if ta else
                    g.op(MatMul(transpose_b=not tb), [gy, b], "d0_full"))
            ga = g.sum_to(full, a, "d0")
        if g.needs(1):
            full = (g.op(MatMul(transpose_a=True, transpose_b=ta), [gy, a], "d1_full") if tb else
                    g.op(MatMul(transpose_a=not ta), [a, gy], "d1_full"))
            gb = g.sum_to(full, b, "d1")
        return ga, gb


class Select(Op):
    """Pick one index along ``axis`` and drop that axis: ``y = x[:, index]`` for ``axis = 1``
    (the time step ``x_t`` of an unrolled recurrence). ``index`` may be negative (from the end).
    """

    kind = "select"
    user_facing = False
    axis: int
    index: int

    samples = (
        sample({"axis": 1, "index": 2}, (2, 4, 3)),
        sample({"axis": -1, "index": -1}, (3, 5)),
    )

    def infer(self, xs):
        x = xs[0]
        axis = norm_axis(self.axis, x.rank, "select axis")
        size = static(x.shape[axis], f"select dim {axis} of {x}")
        if not -size <= self.index < size:
            raise ShapeError(f"select index {self.index} is out of range for dim {axis} of size {size} in {x}")
        return x.with_shape(x.shape[:axis] + x.shape[axis + 1:])

    def window(self, xs):
        return None

    def forward(self, x):
        return x[(slice(None),) * (self.axis % x.ndim) + (self.index,)]


    def onnx(self, ctx, xs, y):
        x = ctx.type_of(xs[0])
        axis = norm_axis(self.axis, x.rank, "select axis")
        # a scalar (rank-0) index drops the axis, like x[:, index]
        ctx.node("Gather", [xs[0], ctx.ints(self.index % x.shape[axis], "index")], y, axis=axis)

    def vjp(self, g, xs, y, gy):
        x = g.type_of(xs[0])
        axis = norm_axis(self.axis, x.rank, "select axis")
        size = x.shape[axis]
        return (g.op(SelectGrad(axis=axis, index=self.index % size, size=size), [gy], "dx"),)

    def describe(self):
        return f"axis {self.axis} [{self.index}]"


class SelectGrad(Op):
    """Gradient of ``select``: a new axis of ``size`` at ``axis`` holding ``gy`` at ``index`` and
    zeros elsewhere: ``gx[:, index] = gy``, ``gx[:, j] = 0`` for ``j ≠ index`` (``axis = 1``).
    """

    kind = "select_grad"
    user_facing = False
    axis: int
    index: int
    size: PositiveInt

    samples = (
        sample({"axis": 1, "index": 2, "size": 4}, (2, 3)),
        sample({"axis": -1, "index": -1, "size": 5}, (3,)),
    )

    def infer(self, xs):
        x = xs[0]
        axis = norm_axis(self.axis, x.rank + 1, "select_grad axis")
        if not -self.size <= self.index < self.size:
            raise ShapeError(f"select_grad index {self.index} is out of range for size {self.size}")
        return x.with_shape(x.shape[:axis] + (self.size,) + x.shape[axis:])

    def window(self, xs):
        return None

    def forward(self, gy):
        axis = self.axis % (gy.ndim + 1)
        out = np.zeros(gy.shape[:axis] + (self.size,) + gy.shape[axis:], gy.dtype)
        out[(slice(None),) * axis + (self.index,)] = gy
        return out


    def onnx(self, ctx, xs, y):
        rank = ctx.type_of(xs[0]).rank + 1
        axis = norm_axis(self.axis, rank, "select_grad axis")
        index = self.index % self.size
        kept = ctx.node("Unsqueeze", [xs[0], ctx.ints([axis], "axes")], hint="unsqueezed")
        ctx.node("Pad", [kept, _pads(rank, axis, index, self.size - 1 - index, ctx)], y, mode="constant")

    def vjp(self, g, xs, y, gy):
        return (g.op(Select(axis=self.axis, index=self.index), [gy], "dgy"),)

    def describe(self):
        return f"axis {self.axis} [{self.index}] of {self.size}"


class Stack(Op):
    """Stack equal-shaped inputs along a new axis: ``y[:, k] = x_k`` for ``axis = 1``;
    ``K`` inputs of shape ``(N, H)`` give ``(N, K, H)`` (the sequence output of a recurrence).
    """

    kind = "stack"
    user_facing = False
    arity = (1, None)
    axis: int = 1

    samples = (
        sample({}, (2, 3), (2, 3), (2, 3)),
        sample({"axis": -1}, (2, 3), (2, 3)),
    )

    def infer(self, xs):
        x0 = xs[0]
        for k, x in enumerate(xs[1:], 1):
            if x.dtype != x0.dtype or len(x.shape) != len(x0.shape) or not all(map(same_dims, x.shape, x0.shape)):
                raise ShapeError(f"stack inputs must have equal shapes and dtypes: input {k} is {x} {x.dtype}, input 0 is {x0} {x0.dtype}")
        axis = norm_axis(self.axis, x0.rank + 1, "stack axis")
        return x0.with_shape(x0.shape[:axis] + (len(xs),) + x0.shape[axis:])

    def window(self, xs):
        return None

    def forward(self, *xs):
        return np.stack(xs, axis=self.axis)


    def onnx(self, ctx, xs, y):
        axis = norm_axis(self.axis, ctx.type_of(xs[0]).rank + 1, "stack axis")
        axes = ctx.ints([axis], "axes")
        if len(xs) == 1:
            ctx.node("Unsqueeze", [xs[0], axes], y)
            return
        ctx.node("Concat", [ctx.node("Unsqueeze", [x, axes], hint=f"unsqueezed{k}") for k, x in enumerate(xs)], y, axis=axis)

    def vjp(self, g, xs, y, gy):
        axis = norm_axis(self.axis, g.type_of(xs[0]).rank + 1, "stack axis")
        return tuple(g.op(Select(axis=axis, index=k), [gy], f"d{k}") if g.needs(k) else None for k in range(len(xs)))

    def describe(self):
        return f"axis {self.axis}" if self.axis != 1 else ""


class Slice(Op):
    """Take ``start ≤ i < end`` along ``axis``: ``y = x[…, start:end, …]``, size ``end − start``
    (the gates of an LSTM's pre-activation ``a[:, 0:H]``, …). Requires ``0 ≤ start < end ≤ size``.
    """

    kind = "slice"
    summary = "A slice of the indices start ≤ i < end along one axis."
    axis: int = Field(description="the axis sliced (negative counts from the end)")
    start: int = Field(ge=0, description="first index kept")
    end: PositiveInt = Field(description="one past the last index kept; at most the axis' size")

    samples = (
        sample({"axis": -1, "start": 1, "end": 3}, (2, 5)),
        sample({"axis": 2, "start": 1, "end": 4}, (2, 3, 5, 5)),
    )

    @model_validator(mode="after")
    def _check_range(self):
        if self.start >= self.end:
            raise ValueError(f"slice start {self.start} must be below end {self.end}")
        return self

    def infer(self, xs):
        x = xs[0]
        axis = norm_axis(self.axis, x.rank, "slice axis")
        size = static(x.shape[axis], f"slice dim {axis} of {x}")
        if self.end > size:
            raise ShapeError(f"slice {self.start}:{self.end} on axis {axis} exceeds its size {size} in {x}")
        return x.with_shape(x.shape[:axis] + (self.end - self.start,) + x.shape[axis + 1:])

    def window(self, xs):
        if xs[0].rank != 4:
            return None
        axis = norm_axis(self.axis, 4)
        # output index o reads input index o + start along the sliced spatial axis
        return tuple(Window(Fraction(1), Fraction(self.start if axis == dim else 0), 1) for dim in (2, 3))

    def forward(self, x):
        return x[(slice(None),) * (self.axis % x.ndim) + (slice(self.start, self.end),)]


    def onnx(self, ctx, xs, y):
        axis = norm_axis(self.axis, ctx.type_of(xs[0]).rank, "slice axis")
        ctx.node("Slice", [xs[0], ctx.ints([self.start], "starts"), ctx.ints([self.end], "ends"), ctx.ints([axis], "axes")], y)

    def vjp(self, g, xs, y, gy):
        x = g.type_of(xs[0])
        axis = norm_axis(self.axis, x.rank, "slice axis")
        return (g.op(SliceGrad(axis=axis, start=self.start, end=self.end, size=x.shape[axis]), [gy], "dx"),)

    def describe(self):
        return f"axis {self.axis} [{self.start}:{self.end}]"


class SliceGrad(Op):
    """Gradient of ``slice``: ``gy`` zero-padded back to ``size`` along ``axis``:
    ``gx[…, start:end, …] = gy``, zeros outside ``[start, end)``.
    """

    kind = "slice_grad"
    user_facing = False
    axis: int
    start: int = Field(ge=0)
    end: PositiveInt
    size: PositiveInt

    samples = (
        sample({"axis": -1, "start": 1, "end": 3, "size": 5}, (2, 2)),
        sample({"axis": 1, "start": 1, "end": 3, "size": 5}, (2, 2, 4), note="zeros on both sides"),
        # channel slice of NCHW (concat's gradient); a spatial slice would give output units that are
        # padding, whose input support is empty, which the receptive-field test cannot express
        sample({"axis": 1, "start": 0, "end": 2, "size": 3}, (2, 2, 3, 3)),
    )

    @model_validator(mode="after")
    def _check_range(self):
        if not self.start < self.end <= self.size:
            raise ValueError(f"slice_grad needs start < end ≤ size, got {self.start}:{self.end} of {self.size}")
        return self

    def infer(self, xs):
        x = xs[0]
        axis = norm_axis(self.axis, x.rank, "slice_grad axis")
        if not same_dims(x.shape[axis], self.end - self.start):
            raise ShapeError(f"slice_grad input {x} has {x.shape[axis]} entries on axis {axis}, expected {self.end - self.start}")
        return x.with_shape(x.shape[:axis] + (self.size,) + x.shape[axis + 1:])

    def window(self, xs):
        if xs[0].rank != 4:
            return None
        axis = norm_axis(self.axis, 4)
        # output index o reads input index o − start (nothing outside [start, end))
        return tuple(Window(Fraction(1), Fraction(-self.start if axis == dim else 0), 1) for dim in (2, 3))

    def forward(self, gy):
        axis = self.axis % gy.ndim
        out = np.zeros(gy.shape[:axis] + (self.size,) + gy.shape[axis + 1:], gy.dtype)
        out[(slice(None),) * axis + (slice(self.start, self.end),)] = gy
        return out


    def onnx(self, ctx, xs, y):
        rank = ctx.type_of(xs[0]).rank
        axis = norm_axis(self.axis, rank, "slice_grad axis")
        ctx.node("Pad", [xs[0], _pads(rank, axis, self.start, self.size - self.end, ctx)], y, mode="constant")

    def vjp(self, g, xs, y, gy):
        return (g.op(Slice(axis=self.axis, start=self.start, end=self.end), [gy], "dgy"),)

    def describe(self):
        return f"axis {self.axis} [{self.start}:{self.end}] of {self.size}"


class CausalMask(Op):
    """Causal (look-ahead) mask of attention scores ``x (…, T, T)`` (query ``i``, key ``j``):
    ``y[…, i, j] = x[…, i, j]`` where ``j ≤ i`` and ``fill`` where ``j > i``, so that the following
    softmax gives future positions weight ~0. Output has the input's shape. ``fill`` is
    ``MASK_FILL = −1e9`` in the forward pass; the gradient is the same op with ``fill = 0``:
    ``gx = gy`` where ``j ≤ i``, ``0`` above the diagonal. ``attention`` with ``causal: true`` applies
    it; as a layer of its own it is what an imported ONNX ``Where`` of a causal mask becomes.
    """

    kind = "causal_mask"
    summary = "A causal mask of (…, T, T) attention scores: keys after the query get fill (as attention's causal)."
    fill: float = Field(MASK_FILL, description="the value of the masked scores (key j > query i); the softmax after gives them weight ~0")

    # A finite fill in the samples: with −1e9 the one-op test loss Σ r ⊙ y is itself ~1e9 and central
    # differences lose every digit; the default fill is gradient-checked through attention's softmax.
    samples = (
        sample({"fill": -4.0}, (2, 4, 4)),
        sample({"fill": -4.0}, (2, 2, 3, 3), note="heads"),
    )

    def infer(self, xs):
        x = xs[0]
        expect_float(x, "causal_mask input")
        if x.rank < 2:
            raise ShapeError(f"causal_mask input must have rank ≥ 2 (…, T, T), got {x}")
        if not same_dims(x.shape[-1], x.shape[-2]):
            raise ShapeError(f"causal_mask needs square scores (…, T, T) (equal query and key lengths), got {x}: {x.shape[-2]} ≠ {x.shape[-1]}")
        return x

    def window(self, xs):
        return None

    def forward(self, x):
        return np.where(_future(x.shape[-1]), np.asarray(self.fill, x.dtype), x)


    def onnx(self, ctx, xs, y):
        x = ctx.type_of(xs[0])
        fill = ctx.const(self.fill, x.dtype, "fill")
        t = x.shape[-1]
        if isinstance(t, int):  # the usual case: a (T, T) boolean constant, broadcast over the batch dims
            future = ctx.const(_future(t), "bool", "future")
        else:  # symbolic T: [j > i] from two ranges built at run time
            size = ctx.node("Squeeze", [ctx.node("Shape", xs, hint="t", start=-1)], hint="t_scalar")
            steps = ctx.node("Range", [ctx.ints(0, "zero"), size, ctx.ints(1, "one")], hint="positions")
            future = ctx.node("Greater", [ctx.node("Unsqueeze", [steps, ctx.ints([0], "axes")], hint="keys"),
                                          ctx.node("Unsqueeze", [steps, ctx.ints([1], "axes")], hint="queries")], hint="future")
        ctx.node("Where", [future, fill, xs[0]], y)

    def vjp(self, g, xs, y, gy):
        return (g.op(CausalMask(fill=0.0), [gy], "dx"),)

    def describe(self):
        return "" if self.fill == MASK_FILL else f"fill {self.fill:g}"


def _pads(rank: int, axis: int, before: int, after: int, ctx) -> str:
    """ONNX ``Pad`` pads (all begins, then all ends) with zeros everywhere except ``axis``."""
    pads = [0] * (2 * rank)
    pads[axis], pads[rank + axis] = before, after
    return ctx.ints(pads, "pads")


@lru_cache(maxsize=64)
def _future(t: int) -> np.ndarray:
    """``[j > i]`` for a ``(T, T)`` score matrix (read-only, cached: the mask is the same every step)."""
    mask = np.triu(np.ones((t, t), dtype=bool), k=1)
    mask.setflags(write=False)
    return mask


@lru_cache(maxsize=64)
def positional_table(t: int, d: int, dtype: str) -> np.ndarray:
    """``PE (T, D)``: ``PE[t, 2i] = sin(t / 10000^{2i/D})``, ``PE[t, 2i+1] = cos(t / 10000^{2i/D})`` (read-only, cached)."""
    pos = np.arange(t, dtype=np.float64)[:, None]
    angle = pos / np.power(10000.0, np.arange(0, d, 2, dtype=np.float64) / d)[None, :]
    table = np.empty((t, d), dtype=np.float64)
    table[:, 0::2] = np.sin(angle)
    table[:, 1::2] = np.cos(angle)
    table = table.astype(dtype)
    table.setflags(write=False)
    return table


class PositionalEncoding(Op):
    """Add the sinusoidal position table to ``x (N, T, D)`` (T and D static, D even):
    ``PE[t, 2i] = sin(t / 10000^{2i/D})``, ``PE[t, 2i+1] = cos(t / 10000^{2i/D})``, ``y = x + PE``.
    No parameters; output has the input's shape.
    """

    kind = "positional_encoding"
    summary = "An addition of the sinusoidal position table to a (N, T, D) sequence."

    samples = (
        sample({}, (2, 5, 4)),
        sample({}, ("N", 3, 6), note="symbolic batch"),
    )

    def infer(self, xs):
        x = xs[0]
        expect_rank(x, 3, "positional_encoding input (N, T, D)")
        expect_float(x, "positional_encoding input")
        static(x.shape[1], "positional_encoding length T")
        d = static(x.shape[2], "positional_encoding features D")
        if d % 2:
            raise ShapeError(f"positional_encoding features D = {d} must be even (sin and cos pairs) in {x}")
        return x

    def window(self, xs):
        return None

    def forward(self, x):
        return x + positional_table(x.shape[1], x.shape[2], x.dtype.name)


    def onnx(self, ctx, xs, y):
        x = ctx.type_of(xs[0])
        table = ctx.const(positional_table(x.shape[1], x.shape[2], x.dtype), x.dtype, "positional_table")
        ctx.node("Add", [xs[0], table], y)

    def vjp(self, g, xs, y, gy):
        return (gy,)


OPS = (Flatten, Reshape, ReshapeLike, Transpose, Concat, MatMul, Select, SelectGrad, Stack, Slice, SliceGrad, CausalMask,
       PositionalEncoding)
