"""The op registry: the one list of ops. The spec's layer union, the CLI's op list and the per-op
tests are generated from it."""

from __future__ import annotations

from ..errors import did_you_mean
from . import activations, adaptive_pool, attention, conv, conv1d, dense, elementwise, embedding, groupnorm, loss, lrn, norm, optim, pad, parameter, pointwise, pool, recurrent, reduce, shape_ops, source
from .base import Op

REGISTRY: tuple[type[Op], ...] = (
    source.OPS + conv.OPS + pool.OPS + conv1d.OPS + adaptive_pool.OPS + pad.OPS + elementwise.OPS + activations.OPS + pointwise.OPS + norm.OPS + groupnorm.OPS + lrn.OPS + shape_ops.OPS + dense.OPS + parameter.OPS
    + embedding.OPS + recurrent.OPS + attention.OPS + loss.OPS + reduce.OPS + optim.OPS
)
BY_KIND: dict[str, type[Op]] = {cls.kind: cls for cls in REGISTRY}
assert len(BY_KIND) == len(REGISTRY), "two ops share a kind"

LAYER_KINDS = tuple(cls.kind for cls in REGISTRY if cls.user_facing and not cls.is_loss)
LOSS_KINDS = tuple(cls.kind for cls in REGISTRY if cls.is_loss)


def op_class(kind: str) -> type[Op] | None:
    return BY_KIND.get(kind)


def unknown_op_hint(kind: str, losses: bool = False) -> str | None:
    return did_you_mean(kind, LOSS_KINDS if losses else LAYER_KINDS, "op")
