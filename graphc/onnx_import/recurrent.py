"""ONNX's recurrent ops ``LSTM``, ``GRU`` and ``RNN`` → graphc's ``lstm``, ``gru`` and ``rnn`` layers.

graphc's layers run forward over a batch-first ``x (N, T, D)`` from ``h = c = 0`` and return the
last ``h (N, H)`` or every ``h (N, T, H)``. ONNX's node takes ``X (T, N, D)`` (``layout`` 0) or
``(N, T, D)`` (``layout`` 1) and returns ``Y (T, num_directions, N, H)`` (layout 1: ``(N, T, 1, H)``)
and ``Y_h (1, N, H)`` (layout 1: ``(N, 1, H)``). :func:`recurrent_layers` rewrites each node it can
take, with the wrappers PyTorch's exporter and graphc's own export put around it, into one node of
this module's own types (``graphc.LSTM``, ``graphc.GRU``, ``graphc.RNN``: ``(x (N, T, D), wx, wh,
biases…) → h``), which :data:`CONVERTERS` turn into the layer:

- before: ``Transpose(perm 1, 0, 2)`` of a batch-first tensor (absorbed), else one is inserted;
- after, every step: ``Y → Squeeze(axis 1) → Transpose(1, 0, 2)`` (layout 1: ``Squeeze(axis 2)``);
  ``Y → Squeeze(axis 1)`` alone (time first, as a stacked layer reads it) keeps a ``Transpose``;
- a ``Gather(axis 1, index T − 1 or −1)`` of the sequence (PyTorch's ``y[:, -1]``) is the last
  state: the layer's own output when nothing else reads the sequence, else a squeezed ``Slice``;
- after, the last state: ``Y_h → Squeeze(axis 0)`` (layout 1: axis 1), ``Gather`` of index 0 or −1
  there, or a ``Reshape`` to ``(N, H)``;
- any other use of ``Y`` or ``Y_h`` gets ONNX nodes recomputing it from graphc's output (an
  ``Unsqueeze``, a ``Transpose``, a ``Slice`` of the last step);
- a zero initial state made in the graph (PyTorch's ``h0`` for a symbolic batch: a ``ConstantOfShape``
  of 0, sliced per layer of a stack) is dropped with its makers.

Weights, ONNX ``W (1, gH, D)``, ``R (1, gH, H)``, ``B (1, 2gH) = [Wb; Rb]`` → graphc ``wx = Wᵀ
(D, gH)``, ``wh = Rᵀ (H, gH)`` with the gate blocks reordered: LSTM ONNX ``i, o, f, c`` → graphc
``i, f, o, g`` and ``b = Wb + Rb``; GRU ONNX ``z, r, h`` → graphc (PyTorch's) ``r, z, n``, ``bx = Wb``,
``bh = Rb`` (graphc's GRU applies the reset gate after the hidden projection: ONNX
``linear_before_reset = 1``); RNN ``b = Wb + Rb``.

Refused, with the reason (:func:`refusal`): a direction other than forward, activations other than
the defaults (RNN: ``Tanh``), ``clip``, ``input_forget``, GRU ``linear_before_reset = 0``,
peepholes, ``sequence_lens`` other than T for every sequence, a nonzero or computed initial state,
the LSTM's ``Y_c`` used, weights that are computed rather than constants.
"""

from __future__ import annotations

import numpy as np

from ..tensor import free_name
from .fold import Folded, Node
from .patterns import Uses, _axes, _new_const
from .to_spec import Context, Layer, Unsupported

#: ONNX op type → (graphc layer, gates g, ONNX's gate block for each of graphc's blocks, default activations)
KINDS = {
    "LSTM": ("lstm", 4, (0, 2, 1, 3), ("Sigmoid", "Tanh", "Tanh")),  # ONNX i, o, f, c → graphc i, f, o, g
    "GRU": ("gru", 3, (1, 0, 2), ("Sigmoid", "Tanh")),  # ONNX z, r, h → graphc r, z, n
    "RNN": ("rnn", 1, (0,), ("Tanh",)),
}
OWN = {f"graphc.{op}": op for op in KINDS}  # this module's node types


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _input(node: Node, i: int) -> str:
    return node.inputs[i] if len(node.inputs) > i else ""


#: ops that keep a tensor of zeros zeros (PyTorch slices one layer's h0 out of a stacked zero tensor)
ZERO_KEEPING = frozenset({"Slice", "Gather", "Squeeze", "Unsqueeze", "Reshape", "Expand", "Identity", "Transpose"})


def _zero_makers(name: str, u: Uses) -> list[Node] | None:
    """The nodes making value ``name`` if it is all zeros: none for a zero constant; a
    ``ConstantOfShape`` of 0 and the slices and reshapes from it (None: not known to be zeros)."""
    c = u.const(name)
    if c is not None:
        return [] if np.all(c == 0) else None
    maker = u.producer.get(name)
    if maker is not None and maker.op_type == "ConstantOfShape":
        value = maker.attrs.get("value")
        return [maker] if value is None or np.all(np.asarray(value) == 0) else None
    if maker is not None and maker.op_type in ZERO_KEEPING:
        up = _zero_makers(maker.inputs[0], u)
        return None if up is None else up + [maker]
    return None


def _zero(name: str, u: Uses) -> bool:
    return _zero_makers(name, u) is not None


def refusal(node: Node, f: Folded, u: Uses | None = None) -> str | None:
    """Why graphc cannot take the recurrent ``node`` (None: it can)."""
    u = u or Uses(f)
    layer, gates, _, default = KINDS[node.op_type]
    a = node.attrs
    direction = _text(a.get("direction", "forward"))
    if direction != "forward":
        return f"direction {direction}: graphc's {layer} runs forward only"
    acts = [_text(v) for v in a.get("activations", [])]
    if acts and [s.lower() for s in acts] != [s.lower() for s in default]:
        return f"activations {', '.join(acts)}: graphc's {layer} uses {', '.join(default)}"
    if "clip" in a:
        return f"clip {a['clip']:g}: graphc's {layer} does not clip its gate inputs"
    if a.get("input_forget", 0):
        return "input_forget 1 (the input and forget gates coupled): graphc's lstm has both gates"
    if node.op_type == "GRU" and not a.get("linear_before_reset", 0):
        return ("linear_before_reset 0 (the reset gate applied before the hidden projection): graphc's gru is PyTorch's, "
                "linear_before_reset 1")
    if node.op_type == "LSTM" and _input(node, 7) and not _zero(_input(node, 7), u):
        return "peepholes P: graphc's lstm has none"
    if node.op_type == "LSTM" and len(node.outputs) > 2 and node.outputs[2] and (u.readers.get(node.outputs[2]) or node.outputs[2] in f.outputs):
        return "its cell state Y_c is used: graphc's lstm returns h only"
    layout = int(a.get("layout", 0))
    shape = f.shapes.get(node.inputs[0])
    if shape is None or len(shape) != 3:
        return "its input's shape is unknown (graphc's recurrent layers take (N, T, D))"
    steps = shape[layout] if layout in (0, 1) else None
    if not isinstance(steps, int) or not isinstance(shape[2], int):
        return f"a symbolic number of time steps {steps} or features {shape[2]}: graphc unrolls a static T over a static D"
    lens = _input(node, 4)
    if lens:
        c = u.const(lens)
        if c is None:
            return "sequence_lens computed at run time: graphc's recurrent layers run every sequence over all T steps"
        if np.any(c != steps):
            return f"sequence_lens {c.tolist()} shorter than T = {steps}: graphc's recurrent layers run every sequence over all T steps"
    for i, what in ((5, "initial_h"), (6, "initial_c")):
        if _input(node, i) and not _zero(_input(node, i), u):
            return f"a nonzero or computed {what}: graphc's recurrent layers start from zero"
    if any(u.const(_input(node, i)) is None for i in (1, 2)) or _input(node, 3) and u.const(_input(node, 3)) is None:
        return "its weights W, R or bias B are computed, not constants"
    return None


def graphc_params(op_type: str, hidden: int, w: np.ndarray, r: np.ndarray, b: np.ndarray | None) -> dict[str, np.ndarray]:
    """graphc's parameters of an ONNX ``W``, ``R``, ``B`` (forward direction)."""
    layer, gates, order, _ = KINDS[op_type]
    width = gates * hidden

    def blocks(m):  # ONNX's gate blocks along axis 0, in graphc's order
        return np.concatenate([m[k * hidden:(k + 1) * hidden] for k in order], axis=0).astype(np.float32)

    bias = np.zeros(2 * width, np.float32) if b is None else b.reshape(-1)
    wb, rb = blocks(bias[:width]), blocks(bias[width:])
    params = {"wx": np.ascontiguousarray(blocks(w[0]).T), "wh": np.ascontiguousarray(blocks(r[0]).T)}
    return {**params, **({"bx": wb, "bh": rb} if op_type == "GRU" else {"b": wb + rb})}


class _Splice:
    """New values and nodes of one rewrite (named after the ONNX node, shapes recorded)."""

    def __init__(self, f: Folded, label: str):
        self.f, self.label, self.before, self.after = f, label, [], []

    def value(self, hint: str, shape) -> str:
        name = free_name(f"{self.label}/{hint}", self.f.shapes.keys() | self.f.consts.keys())
        self.f.shapes[name] = tuple(shape)
        return name

    def add(self, where: list, op_type: str, inputs, output: str, **attrs) -> str:
        where.append(Node(op_type, output, list(inputs), [output], attrs))
        return output


def _squeezes(node: Node | None, u: Uses, axis: int, rank: int) -> bool:
    """Whether ``node`` is a ``Squeeze`` of exactly ``axis`` of a rank-``rank`` value."""
    return node is not None and node.op_type == "Squeeze" and _axes(node, u) is not None and [a % rank for a in _axes(node, u)] == [axis]


def _last_state(reader: Node | None, u: Uses, f: Folded, axis: int, size: int, shape) -> bool:
    """Whether ``reader`` takes the last entry along ``axis`` (of ``size``) of a rank-3 value,
    dropping the axis: a ``Squeeze`` of it (``size`` 1), a ``Gather`` of index −1 or ``size`` − 1,
    or a ``Reshape`` to ``shape`` (``size`` 1)."""
    if reader is None:
        return False
    if reader.op_type == "Gather" and reader.attrs.get("axis", 0) % 3 == axis:
        idx = u.const(reader.inputs[1])
        return idx is not None and idx.ndim == 0 and int(idx) in (-1, size - 1)
    return size == 1 and (_squeezes(reader, u, axis, 3) or reader.op_type == "Reshape" and f.shapes.get(reader.outputs[0]) == shape)


def _rewrite(f: Folded, u: Uses, node: Node) -> list[Node]:
    """Replace ``node`` and the wrappers around it; returns the nodes that made its zero states
    (dropped by :func:`recurrent_layers` once nothing else reads them)."""
    a = node.attrs
    hidden, layout = int(a["hidden_size"]), int(a.get("layout", 0))
    x = node.inputs[0]
    shape = f.shapes[x]
    steps, batch = (shape[0], shape[1]) if layout == 0 else (shape[1], shape[0])
    s = _Splice(f, node.label)
    group, swaps = [node], {}
    # the input, batch first
    if layout == 0:
        pre = u.producer.get(x)
        if pre is not None and pre.op_type == "Transpose" and list(pre.attrs.get("perm", ())) == [1, 0, 2] and u.private(x):
            x, group = pre.inputs[0], group + [pre]
        else:
            x = s.add(s.before, "Transpose", [x], s.value("batch_first", (batch, steps, shape[2])), perm=[1, 0, 2])
    makers = [m for i in (5, 6, 7) if _input(node, i) for m in _zero_makers(_input(node, i), u)]
    params = graphc_params(node.op_type, hidden, u.const(node.inputs[1]), u.const(node.inputs[2]),
                           u.const(_input(node, 3)) if _input(node, 3) else None)
    y, yh = (list(node.outputs) + ["", ""])[:2]
    used = lambda v: bool(v) and (v in u.readers or v in f.outputs)  # noqa: E731
    seq = used(y)

    def last_step(source, output):
        """``h_T (N, H) = Squeeze(Slice(h, T − 1 : T on axis 1), axis 1)``: the slice after the new
        node, the squeeze returned (to stand where the value's reader was)."""
        picked = s.add(s.after, "Slice", [source], s.value("h_last", (batch, 1, hidden)), starts=[steps - 1], ends=[steps], axes=[1])
        return [Node("Squeeze", output, [picked, _int64(f, s, [1])], [output], {})]

    if seq:
        sq = u.only_reader(y)
        if layout == 1 and _squeezes(sq, u, 2, 4):
            out, group = sq.outputs[0], group + [sq]
        elif layout == 0 and _squeezes(sq, u, 1, 4):
            tr = u.only_reader(sq.outputs[0])
            if tr is not None and tr.op_type == "Transpose" and list(tr.attrs.get("perm", ())) == [1, 0, 2]:
                out, group = tr.outputs[0], group + [sq, tr]
            else:  # time first (T, N, H), as the next layer of PyTorch's stack reads it
                out, group = s.value("h", (batch, steps, hidden)), group + [sq]
                s.add(s.after, "Transpose", [out], sq.outputs[0], perm=[1, 0, 2])
        else:
            out = s.value("h", (batch, steps, hidden))
            steps_first = s.add(s.after, "Transpose", [out], s.value("h_steps_first", (steps, batch, hidden)), perm=[1, 0, 2]) if layout == 0 else out
            s.add(s.after, "Unsqueeze", [steps_first, _int64(f, s, [1 + layout])], y)
        readers = u.readers.get(out, [])
        picks = [r for r in readers if _last_state(r, u, f, 1, steps, None)]  # PyTorch's y[:, -1]
        if len(readers) == 1 and picks and not used(yh) and out not in f.outputs:
            seq, out, group = False, picks[0].outputs[0], group + picks  # only the last state is used
        else:
            swaps = {id(p): last_step(out, p.outputs[0]) for p in picks}  # each pick a squeezed slice, in its place
        if used(yh):
            r = u.only_reader(yh)
            if _last_state(r, u, f, layout, 1, (batch, hidden)):
                group.append(r)
                s.after += last_step(out, r.outputs[0])
            else:
                last = s.value("h_last", (batch, 1, hidden))
                s.add(s.after, "Slice", [out], last if layout == 0 else yh, starts=[steps - 1], ends=[steps], axes=[1])
                if layout == 0:
                    s.add(s.after, "Transpose", [last], yh, perm=[1, 0, 2])
    else:
        r = u.only_reader(yh) if yh else None
        if _last_state(r, u, f, layout, 1, (batch, hidden)):
            out, group = r.outputs[0], group + [r]
        else:
            out = s.value("h", (batch, hidden))
            if used(yh):
                s.add(s.after, "Unsqueeze", [out, _int64(f, s, [layout])], yh)
    inputs = [x] + [_new_const(f, f"{node.label}/{k}", v) for k, v in params.items()]
    own = Node(f"graphc.{node.op_type}", node.name, inputs, [out], {"hidden": hidden, "return_sequences": seq})
    ids = {id(n) for n in group}
    at = next(i for i, n in enumerate(f.nodes) if n is node)
    rest = [m for n in f.nodes[at + 1:] if id(n) not in ids for m in swaps.get(id(n), [n])]
    f.nodes[:] = [n for n in f.nodes[:at] if id(n) not in ids] + s.before + [own] + s.after + rest
    return makers


def _int64(f: Folded, s: _Splice, values) -> str:
    name = s.value("axes", (len(values),))
    f.consts[name] = np.asarray(values, dtype=np.int64)
    return name


def recurrent_layers(f: Folded) -> Folded:
    """Rewrite every recurrent node graphc can take (see the module's docstring); leave the rest,
    which their converter refuses with :func:`refusal`'s reason. In place; ``f`` is returned."""
    makers = []
    for node in [n for n in f.nodes if n.op_type in KINDS and n.domain in ("", "ai.onnx")]:
        u = Uses(f)
        if refusal(node, f, u) is None:
            makers += _rewrite(f, u, node)
    while makers:  # the zero states' makers nothing reads any more
        u = Uses(f)
        dead = {id(m) for m in makers if not any(o in u.readers or o in f.outputs for o in m.outputs)}
        if not dead:
            break
        f.nodes[:] = [n for n in f.nodes if id(n) not in dead]
        makers = [m for m in makers if id(m) not in dead]
    return f


def _layer(node: Node, ctx: Context) -> list[Layer]:
    layer, *_ = KINDS[OWN[node.op_type]]
    names = ("wx", "wh", "bx", "bh") if layer == "gru" else ("wx", "wh", "b")
    attrs = {"hidden": node.attrs["hidden"], **({"return_sequences": True} if node.attrs["return_sequences"] else {})}
    return [Layer("", layer, attrs, [ctx.tensor(node.inputs[0])], {k: ctx.const(v) for k, v in zip(names, node.inputs[1:])})]


def _refuse(node: Node, ctx: Context):
    raise Unsupported(refusal(node, ctx.f) or "a form of it graphc's importer does not rewrite")


#: converters: this module's node types to layers; ONNX's own op types (what is left of them) refused
CONVERTERS = {**{own: _layer for own in OWN}, **{op: _refuse for op in KINDS}}
