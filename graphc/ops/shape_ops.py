"""Shape ops: flatten, reshape, transpose, concat, matmul, select, stack, slice, causal mask and the
sinusoidal positional encoding. None of them has parameters; only matmul costs MACs."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

from pydantic import Field, field_validator, model_validator

from ..errors import ShapeError
from ..tensor import Shape, broadcast, fmt_shape, static
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
    axis: int = 1

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

    def describe(self):
        return f"axis {self.axis}" if self.axis != 1 else ""


class Reshape(Op):
    """Reshape with ONNX semantics: ``0`` copies the input dim at that position (this is how a
    symbolic batch passes through), one ``−1`` is inferred from the element count, every other entry
    is the new size. ``(N, 12, 4)`` with shape ``(0, −1, 2, 4)`` gives ``(N, 6, 2, 4)``.
    The element counts of input and output must be equal; the data order (row-major) is unchanged.
    """

    kind = "reshape"
    shape: IntTuple

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

    def describe(self):
        return fmt_shape(self.shape)


class Transpose(Op):
    """Permute the axes: ``y.shape[i] = x.shape[perm[i]]``, ``y[i_0, …] = x[…]`` with ``i_k`` at axis ``perm[k]``.
    ``perm = (0, 2, 1, 3)`` turns ``(N, T, heads, d_k)`` into ``(N, heads, T, d_k)``.
    """

    kind = "transpose"
    perm: IntTuple

    samples = (
        sample({"perm": (0, 2, 1, 3)}, (2, 3, 4, 5)),
        sample({"perm": (1, 0)}, (3, 4)),
        sample({"perm": (0, 2, 1)}, ("N", 3, 4), note="symbolic batch"),
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

    def describe(self):
        return fmt_shape(self.perm)


class Concat(Op):
    """Join the inputs along ``axis``: ``y.shape[axis] = Σ x_k.shape[axis]``, every other dim equal
    (symbolic dims must be the same symbol). NCHW channel concatenation is ``axis = 1``.
    """

    kind = "concat"
    arity = (2, None)
    axis: int = 1

    samples = (
        sample({}, (2, 3, 4, 4), (2, 5, 4, 4)),
        sample({"axis": -1}, (2, 3), (2, 4), (2, 1)),
        sample({}, ("N", 2, 3), ("N", 1, 3), note="symbolic batch"),
    )

    def infer(self, xs):
        x0 = xs[0]
        axis = norm_axis(self.axis, x0.rank, "concat axis")
        for k, x in enumerate(xs[1:], 1):
            if x.dtype != x0.dtype:
                raise ShapeError(f"concat input {k} has dtype {x.dtype} but input 0 has {x0.dtype}")
            if x.rank != x0.rank:
                raise ShapeError(f"concat input {k} {x} has rank {x.rank} but input 0 {x0} has rank {x0.rank}")
            for i, (a, b) in enumerate(zip(x0.shape, x.shape)):
                if i != axis and not same_dims(a, b):
                    raise ShapeError(f"concat along axis {axis}: input {k} {x} differs from input 0 {x0} at axis {i} ({b} ≠ {a})")
        total = sum(static(x.shape[axis], f"concat input {k} dim {axis}") for k, x in enumerate(xs))
        return x0.with_shape(x0.shape[:axis] + (total,) + x0.shape[axis + 1:])

    def window(self, xs):
        if xs[0].rank == 4 and norm_axis(self.axis, 4) >= 2:
            return None
        return super().window(xs)

    def describe(self):
        return f"axis {self.axis}" if self.axis != 1 else ""


class MatMul(Op):
    """Matrix product with NumPy ``matmul`` semantics for rank ≥ 2: ``a (…, M, K) · b (…, K, P) → (…, M, P)``,
    ``y[…, m, p] = Σ_k a[…, m, k] · b[…, k, p]``; the batch dims ``…`` broadcast.
    MACs per example: ``prod(batch) · M · K · P`` (symbolic dims count as 1).
    """

    kind = "matmul"
    arity = (2, 2)

    samples = (
        sample({}, (3, 4), (4, 5)),
        sample({}, (2, 3, 4), (4, 5), note="broadcast weight"),
        sample({}, (2, 2, 3, 4), (2, 2, 4, 3), note="batched heads"),
    )

    def infer(self, xs):
        a, b = xs
        for x, what in ((a, "a (…, M, K)"), (b, "b (…, K, P)")):
            if x.rank < 2:
                raise ShapeError(f"matmul input {what} must have rank ≥ 2, got shape {x}")
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
        k = xs[0].shape[-1]
        return y.numel() * (k if isinstance(k, int) else 1)


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

    def describe(self):
        return f"axis {self.axis} [{self.index}]"


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

    def describe(self):
        return f"axis {self.axis}" if self.axis != 1 else ""


class Slice(Op):
    """Take ``start ≤ i < end`` along ``axis``: ``y = x[…, start:end, …]``, size ``end − start``
    (the gates of an LSTM's pre-activation ``a[:, 0:H]``, …). Requires ``0 ≤ start < end ≤ size``.
    """

    kind = "slice"
    axis: int
    start: int = Field(ge=0)
    end: PositiveInt

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

    def describe(self):
        return f"axis {self.axis} [{self.start}:{self.end}]"


class CausalMask(Op):
    """Causal (look-ahead) mask of attention scores ``x (…, T, T)`` (query ``i``, key ``j``):
    ``y[…, i, j] = x[…, i, j]`` where ``j ≤ i`` and ``MASK_FILL = −1e9`` where ``j > i``,
    so that the following softmax gives future positions weight ~0. Output has the input's shape.
    """

    kind = "causal_mask"
    user_facing = False

    samples = (
        sample({}, (2, 4, 4)),
        sample({}, (2, 2, 3, 3), note="heads"),
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


class PositionalEncoding(Op):
    """Add the sinusoidal position table to ``x (N, T, D)`` (T and D static, D even):
    ``PE[t, 2i] = sin(t / 10000^{2i/D})``, ``PE[t, 2i+1] = cos(t / 10000^{2i/D})``, ``y = x + PE``.
    No parameters; output has the input's shape.
    """

    kind = "positional_encoding"

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


OPS = (Flatten, Reshape, Transpose, Concat, MatMul, Select, Stack, Slice, CausalMask, PositionalEncoding)
