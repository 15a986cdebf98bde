"""Recurrent layers ``rnn``, ``lstm`` and ``gru``: composites unrolled over the (static) time axis into
matmuls, adds, sigmoids, tanhs and products. Node names: ``<name>/t<step>/<part>``.

Their ``onnx_layer`` facet lowers a whole layer to ONNX's own ``RNN``/``LSTM``/``GRU`` node, as
PyTorch exports ``nn.LSTM(batch_first=True)``: the forward (inference) export uses it (one node with
onnxruntime's CPU and CUDA kernels instead of T unrolled steps); a training step keeps the
expansion, whose inner values its backward pass reads."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from ..tensor import static
from .base import XAVIER, ZEROS, Composite, Param, PositiveInt, expect_rank, sample
from .elementwise import Add, Mul, Sigmoid, Sub, Tanh
from .shape_ops import MatMul, Select, Slice, Stack


class _Recurrent(Composite):
    hidden: PositiveInt = Field(description="size H of the hidden state")
    return_sequences: bool = Field(False, description="output every step's h (N, T, H) instead of the last h (N, H)")

    #: the pre-activation width is ``gates · H``
    gates: ClassVar[int] = 1
    #: the bias vectors, each ``(gH,)``: one added to the sum of both projections, or (GRU) one per projection
    biases: ClassVar[tuple[str, ...]] = ("b",)
    #: ONNX's op, and for each of its gate blocks in ONNX's order, graphc's block
    onnx_op: ClassVar[str] = "RNN"
    onnx_gates: ClassVar[tuple[int, ...]] = (0,)
    onnx_attrs: ClassVar[dict] = {}

    def _setup(self, b, name, inputs):
        """Check ``x (N, T, D)`` and create ``wx (D, gH)``, ``wh (H, gH)`` and the ``biases`` ``(gH,)``."""
        x = inputs[0]
        xt = b.type_of(x)
        expect_rank(xt, 3, f"{self.kind} input (N, T, D)")
        steps = static(xt.shape[1], f"{self.kind} time steps T")
        d = static(xt.shape[2], f"{self.kind} input features D")
        width = self.gates * self.hidden
        wx = b.param(name, "wx", Param((d, width), XAVIER))
        wh = b.param(name, "wh", Param((self.hidden, width), XAVIER))
        biases = [b.param(name, bias, Param((width,), ZEROS)) for bias in self.biases]
        return x, steps, wx, wh, *biases

    def _preactivation(self, b, step, t, x, h, wx, wh, bias):
        """``a_t = x_t · Wx + h_{t−1} · Wh + b``; the ``Wh`` term is skipped at t = 0 (``h_{−1} = 0``)."""
        xs = b.op(f"{step}/x", Select(axis=1, index=t), [x])
        a = b.op(f"{step}/xw", MatMul(), [xs, wx])
        if h is not None:
            hw = b.op(f"{step}/hw", MatMul(), [h, wh])
            a = b.op(f"{step}/xw_hw", Add(), [a, hw])
        return b.op(f"{step}/a", Add(), [a, bias])

    def _output(self, b, name, hs):
        return b.op(name, Stack(axis=1), hs) if self.return_sequences else hs[-1]

    def _h_name(self, name, step, t, steps):
        """The last hidden state is the layer's output node unless the whole sequence is returned."""
        return name if t == steps - 1 and not self.return_sequences else f"{step}/h"


    def describe(self):
        return f"h{self.hidden}" + (" seq" if self.return_sequences else "")

    def onnx_layer(self, ctx, x: str, params: dict[str, str], y: str) -> None:
        """The whole layer as ONNX's ``onnx_op`` (layout 0, forward, default activations), wrapped as
        PyTorch wraps it: ``Transpose(x, 1 0 2)`` → ``(T, N, D)`` → the node → ``Y_h`` ``Squeeze(0)``
        (the last ``h``) or ``Y`` ``Squeeze(1)`` → ``Transpose(1 0 2)`` (every ``h``, ``(N, T, H)``).
        ``W (1, gH, D) = wx[:, blocks]ᵀ`` and ``R (1, gH, H) = wh[:, blocks]ᵀ`` with the column blocks
        in ONNX's gate order (``onnx_gates``); ``B (1, 2gH) = [b[blocks]; 0]``, GRU ``[bx[blocks]; bh[blocks]]``."""
        hid = self.hidden
        columns = [k * hid + j for k in self.onnx_gates for j in range(hid)]

        def reorder(v, axis, hint):
            return ctx.node("Gather", [v, ctx.ints(columns, "gate_order")], hint=hint, axis=axis) if self.gates > 1 else v

        def weight(pname, hint):  # (K, gH) → (1, gH, K)
            t = ctx.node("Transpose", [reorder(params[pname], 1, f"{hint}_gates")], hint=f"{hint}_t", perm=[1, 0])
            return ctx.node("Unsqueeze", [t, ctx.ints([0], "axes")], hint=hint)

        halves = [reorder(params[b], 0, f"{b}_gates") for b in self.biases]
        if len(halves) == 1:
            halves.append(ctx.const(np.zeros(self.gates * hid), hint="zero_bias"))
        bias = ctx.node("Unsqueeze", [ctx.node("Concat", halves, hint="B_flat", axis=0), ctx.ints([0], "axes")], hint="B")
        steps_first = ctx.node("Transpose", [x], hint="x_steps_first", perm=[1, 0, 2])
        inputs = [steps_first, weight("wx", "W"), weight("wh", "R"), bias]
        if self.return_sequences:
            ys = ctx.node(self.onnx_op, inputs, hint=self.onnx_op, hidden_size=hid, **self.onnx_attrs)
            ys = ctx.node("Squeeze", [ys, ctx.ints([1], "axes")], hint="h_steps_first")
            ctx.node("Transpose", [ys], output=y, perm=[1, 0, 2])
        else:
            last = ctx.node(self.onnx_op, inputs, hint=self.onnx_op, slot=1, hidden_size=hid, **self.onnx_attrs)
            ctx.node("Squeeze", [last, ctx.ints([0], "axes")], output=y)

class RNN(_Recurrent):
    """Elman RNN on ``x (N, T, D)`` (T static), unrolled: ``h_t = tanh(x_t · Wx + h_{t−1} · Wh + b)``,
    ``h_{−1} = 0``. Parameters ``wx (D, H)``, ``wh (H, H)`` (Xavier), ``b (H,)`` (zeros).
    Output: the last ``h (N, H)``, or all ``h`` stacked ``(N, T, H)`` when ``return_sequences``.
    """

    kind = "rnn"
    summary = "An Elman recurrent layer unrolled over a fixed number of time steps."

    samples = (
        sample({"hidden": 3}, (2, 4, 5)),
        sample({"hidden": 2, "return_sequences": True}, (2, 3, 4)),
    )

    def expand(self, b, name, inputs):
        x, steps, wx, wh, bias = self._setup(b, name, inputs)
        hs = []
        for t in range(steps):
            step = f"{name}/t{t}"
            a = self._preactivation(b, step, t, x, hs[-1] if hs else None, wx, wh, bias)
            hs.append(b.op(self._h_name(name, step, t, steps), Tanh(), [a]))
        return self._output(b, name, hs)


class LSTM(_Recurrent):
    """LSTM on ``x (N, T, D)`` (T static), unrolled, gate order ``i, f, o, g``:

    ``a = x_t · Wx + h_{t−1} · Wh + b`` (N, 4H);
    ``i = σ(a[:, 0:H])``, ``f = σ(a[:, H:2H])``, ``o = σ(a[:, 2H:3H])``, ``g = tanh(a[:, 3H:4H])``;
    ``c_t = f ⊙ c_{t−1} + i ⊙ g``, ``h_t = o ⊙ tanh(c_t)``, with ``h_{−1} = c_{−1} = 0`` (so ``c_0 = i ⊙ g``).
    Parameters ``wx (D, 4H)``, ``wh (H, 4H)`` (Xavier), ``b (4H,)`` (zeros): ``4H(D + H) + 4H``.
    Output: the last ``h (N, H)``, or all ``h`` stacked ``(N, T, H)`` when ``return_sequences``.
    """

    kind = "lstm"
    summary = "A long short-term memory layer unrolled over a fixed number of time steps."
    gates: ClassVar[int] = 4
    onnx_op: ClassVar[str] = "LSTM"
    onnx_gates: ClassVar[tuple[int, ...]] = (0, 2, 1, 3)  # ONNX i, o, f, c

    samples = (
        sample({"hidden": 3}, (2, 3, 4)),
        sample({"hidden": 2, "return_sequences": True}, (2, 2, 3)),
    )

    def expand(self, b, name, inputs):
        x, steps, wx, wh, bias = self._setup(b, name, inputs)
        hid = self.hidden
        hs, c = [], None
        for t in range(steps):
            step = f"{name}/t{t}"
            a = self._preactivation(b, step, t, x, hs[-1] if hs else None, wx, wh, bias)

            def gate(part, k, act):
                pre = b.op(f"{step}/{part}_pre", Slice(axis=-1, start=k * hid, end=(k + 1) * hid), [a])
                return b.op(f"{step}/{part}", act, [pre])

            i = gate("i", 0, Sigmoid())
            o = gate("o", 2, Sigmoid())
            g = gate("g", 3, Tanh())
            ig = b.op(f"{step}/i_g", Mul(), [i, g])
            if c is None:
                c = ig
            else:
                f = gate("f", 1, Sigmoid())
                fc = b.op(f"{step}/f_c", Mul(), [f, c])
                c = b.op(f"{step}/c", Add(), [fc, ig])
            tc = b.op(f"{step}/tanh_c", Tanh(), [c])
            hs.append(b.op(self._h_name(name, step, t, steps), Mul(), [o, tc]))
        return self._output(b, name, hs)


class GRU(_Recurrent):
    """GRU on ``x (N, T, D)`` (T static), unrolled, gate order ``r, z, n`` — PyTorch's ``nn.GRU``
    equations exactly:

    ``r = σ(x_t·Wx_r + bx_r + h_{t−1}·Wh_r + bh_r)``, ``z = σ(x_t·Wx_z + bx_z + h_{t−1}·Wh_z + bh_z)``,
    ``n = tanh(x_t·Wx_n + bx_n + r ⊙ (h_{t−1}·Wh_n + bh_n))``, ``h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}``,
    with ``h_{−1} = 0`` (so at t = 0 the hidden projection is the bias ``bh`` alone and ``h_0 = n − z ⊙ n``).
    Parameters ``wx (D, 3H)``, ``wh (H, 3H)`` (Xavier), ``bx (3H,)``, ``bh (3H,)`` (zeros), columns in
    blocks ``[r | z | n]``: ``3H(D + H) + 6H``, PyTorch's count (its ``weight_ih_l0`` is ``wxᵀ``,
    ``weight_hh_l0`` is ``whᵀ``, ``bias_ih_l0`` is ``bx``, ``bias_hh_l0`` is ``bh``).
    Output: the last ``h (N, H)``, or all ``h`` stacked ``(N, T, H)`` when ``return_sequences``.
    """

    kind = "gru"
    summary = "A gated recurrent unit layer (PyTorch's nn.GRU) unrolled over a fixed number of time steps."
    gates: ClassVar[int] = 3
    biases: ClassVar[tuple[str, ...]] = ("bx", "bh")
    onnx_op: ClassVar[str] = "GRU"
    onnx_gates: ClassVar[tuple[int, ...]] = (1, 0, 2)  # ONNX z, r, h
    onnx_attrs: ClassVar[dict] = {"linear_before_reset": 1}  # the reset gate after the hidden projection, as PyTorch's

    samples = (
        sample({"hidden": 3}, (2, 3, 4)),
        sample({"hidden": 2, "return_sequences": True}, (2, 2, 3)),
    )

    def expand(self, b, name, inputs):
        x, steps, wx, wh, bx, bh = self._setup(b, name, inputs)
        hid = self.hidden

        def part(step, what, v, k0, k1):
            return b.op(f"{step}/{what}", Slice(axis=-1, start=k0 * hid, end=k1 * hid), [v])

        hs = []
        for t in range(steps):
            step = f"{name}/t{t}"
            xs = b.op(f"{step}/x", Select(axis=1, index=t), [x])
            ax = b.op(f"{step}/xw_b", Add(), [b.op(f"{step}/xw", MatMul(), [xs, wx]), bx])
            ah = bh if not hs else b.op(f"{step}/hw_b", Add(), [b.op(f"{step}/hw", MatMul(), [hs[-1], wh]), bh])
            # r and z share one sigmoid over their 2H columns
            rz_pre = b.op(f"{step}/rz_pre", Add(), [part(step, "xw_rz", ax, 0, 2), part(step, "hw_rz", ah, 0, 2)])
            rz = b.op(f"{step}/rz", Sigmoid(), [rz_pre])
            r, z = part(step, "r", rz, 0, 1), part(step, "z", rz, 1, 2)
            rh = b.op(f"{step}/r_hw_n", Mul(), [r, part(step, "hw_n", ah, 2, 3)])
            n = b.op(f"{step}/n", Tanh(), [b.op(f"{step}/n_pre", Add(), [part(step, "xw_n", ax, 2, 3), rh])])
            # h_t = (1 − z) ⊙ n + z ⊙ h_{t−1} = n + z ⊙ (h_{t−1} − n); with h_{−1} = 0, n − z ⊙ n
            h_out = self._h_name(name, step, t, steps)
            if hs:
                zd = b.op(f"{step}/z_dh", Mul(), [z, b.op(f"{step}/dh", Sub(), [hs[-1], n])])
                hs.append(b.op(h_out, Add(), [n, zd]))
            else:
                hs.append(b.op(h_out, Sub(), [n, b.op(f"{step}/z_n", Mul(), [z, n])]))
        return self._output(b, name, hs)


OPS = (RNN, LSTM, GRU)
