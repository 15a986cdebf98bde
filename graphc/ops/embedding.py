"""Token embedding: a lookup of rows of a learned table by integer ids, and its gradient, the
scatter-add of the output's cotangent rows into the table's rows."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..errors import GraphcError, ShapeError
from ..tensor import TensorType, fmt_shape, static
from .base import Init, Op, Param, PositiveInt, sample

#: PyTorch's ``nn.Embedding`` initialises its table from N(0, 1)
STANDARD_NORMAL = Init(kind="normal", std=1.0)


def check_ids(ids: np.ndarray, rows: int, what: str) -> None:
    """Ids must index the table, ``0 ≤ id < rows``: NumPy would wrap negative ids round silently."""
    if ids.size and (ids.min() < 0 or ids.max() >= rows):
        bad = np.flatnonzero((ids < 0) | (ids >= rows))[0]
        index = tuple(int(i) for i in np.unravel_index(bad, ids.shape))
        raise GraphcError(f"{what}: id {int(ids.flat[bad])} at index {list(index)} is out of range: ids must lie in "
                          f"[0, {rows}) (num_embeddings = {rows})")


class Embedding(Op):
    """Embedding lookup: integer ids ``x (…)`` (int64, e.g. ``(N, T)``) to vectors ``y (…, D)``:

    ``y[…, :] = W[x[…], :]`` with the table ``W (num_embeddings, dim)``, initialised from N(0, 1)
    as PyTorch's ``nn.Embedding``. Parameters ``num_embeddings·dim``; no MACs.

    An id outside ``[0, num_embeddings)`` is a run-time error naming the id and its index: ``graphc
    run`` checks ``--inputs`` before either backend runs (ONNX's Gather would read a negative id from
    the end of the table), and the kernel checks again. The ids get no gradient; the table's is the
    scatter-add ``gW[v, :] = Σ_{i : x[i] = v} gy[i, :]`` (``embedding_grad``). Lowered to ONNX
    ``Gather`` (axis 0).
    """

    kind = "embedding"
    summary = "A lookup table mapping integer ids (N, T) to learned vectors (N, T, dim)."
    arity = (1, 1)
    num_embeddings: PositiveInt = Field(description="rows of the table: ids lie in [0, num_embeddings) (the vocabulary size)")
    dim: PositiveInt = Field(description="length D of each vector")

    samples = (
        sample({"num_embeddings": 3, "dim": 4}, (2, 5), dtypes=["int64"]),
        sample({"num_embeddings": 2, "dim": 3}, ("N", 4), dtypes=["int64"], note="symbolic batch"),
        sample({"num_embeddings": 5, "dim": 2}, (3,), dtypes=["int64"], note="rank-1 ids"),
    )

    def params(self, xs):
        return {"weight": Param((self.num_embeddings, self.dim), STANDARD_NORMAL)}

    def infer(self, xs):
        x, w = xs
        if x.dtype != "int64":
            raise ShapeError(f"embedding ids must be int64, got {x.dtype} (declare the input with dtype: int64)")
        if tuple(w.shape) != (self.num_embeddings, self.dim):
            raise ShapeError(f"embedding weight {fmt_shape(w.shape)} is not ({self.num_embeddings}, {self.dim})")
        return TensorType((*x.shape, self.dim), w.dtype)

    def index_bound(self, xs, i):
        return self.num_embeddings if i == 0 else None

    def window(self, xs):
        return None

    def describe(self):
        return f"{self.num_embeddings}x{self.dim}"

    def forward(self, x, w):
        check_ids(x, self.num_embeddings, "embedding")
        return w[x]

    def onnx(self, ctx, xs, y):
        ctx.node("Gather", xs[::-1], y, axis=0)

    def vjp(self, g, xs, y, gy):
        gw = g.op(EmbeddingGrad(num_embeddings=self.num_embeddings), [xs[0], gy], "dweight") if g.needs(1) else None
        return None, gw


class EmbeddingGrad(Op):
    """Gradient of embedding w.r.t. its table: the scatter-add of ``gy (…, D)`` by the ids ``x (…)``,

    ``gW[v, :] = Σ_{i : x[i] = v} gy[i, :]`` of shape ``(num_embeddings, D)`` (``np.add.at``: an id
    that occurs several times adds all its rows). Lowered to ONNX ``ScatterND`` with
    ``reduction = 'add'`` into zeros.
    """

    kind = "embedding_grad"
    user_facing = False
    arity = (2, 2)
    num_embeddings: PositiveInt

    samples = (
        sample({"num_embeddings": 3}, (2, 5), (2, 5, 4), dtypes=["int64", "float32"]),
        sample({"num_embeddings": 4}, (6,), (6, 2), dtypes=["int64", "float32"], note="rank-1 ids"),
    )

    def infer(self, xs):
        x, gy = xs
        if x.dtype != "int64":
            raise ShapeError(f"embedding_grad ids must be int64, got {x.dtype}")
        if gy.rank != x.rank + 1 or tuple(gy.shape[:-1]) != tuple(x.shape):
            raise ShapeError(f"embedding_grad: gy {fmt_shape(gy.shape)} is not ids {fmt_shape(x.shape)} with a vector axis")
        return TensorType((self.num_embeddings, static(gy.shape[-1], "embedding dim")), gy.dtype)

    def index_bound(self, xs, i):
        return self.num_embeddings if i == 0 else None

    def window(self, xs):
        return None

    def forward(self, x, gy):
        check_ids(x, self.num_embeddings, "embedding_grad")
        gw = np.zeros((self.num_embeddings, gy.shape[-1]), gy.dtype)
        np.add.at(gw, x.reshape(-1), gy.reshape(-1, gy.shape[-1]))
        return gw

    def vjp(self, g, xs, y, gy):
        """Linear in ``gy``: its cotangent is the lookup of the table's cotangent, ``g_gy = embedding(x; gW')``;
        the ids get none."""
        dim = static(g.type_of(xs[1]).shape[-1], "embedding dim")
        lookup = Embedding(num_embeddings=self.num_embeddings, dim=dim)
        return None, (g.op(lookup, [xs[0], gy], "dgy") if g.needs(1) else None)

    def onnx(self, ctx, xs, y):
        x, gy = xs
        t = ctx.type_of(gy)
        # zeros as a broadcast scalar: no V×D initializer in the file
        zeros = ctx.node("Expand", [ctx.const(0.0, t.dtype, hint="zero"), ctx.ints([self.num_embeddings, t.shape[-1]])], hint="zeros")
        indices = ctx.node("Unsqueeze", [x, ctx.ints([-1])], hint="ids_col")
        ctx.node("ScatterND", [zeros, indices, gy], y, reduction="add")


OPS = (Embedding, EmbeddingGrad)
