"""The spec language's JSON Schema, generated from the spec models and the op registry.

Each layer entry is one of: an op layer (``op`` is the discriminator; the op's own attributes, plus
the common keys ``name``, ``inputs``, ``repeat``, ``init``), or a block call. Values may also be a
block argument reference (``$name``) inside blocks, which the schema allows as any ``$``-string.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal, Union

from pydantic import ConfigDict, Field, create_model

from ..ops import BY_KIND, LAYER_KINDS, LOSS_KINDS
from .models import BlockDecl, LayerEntry, LossDecl, Spec

ARG_REF = {"type": "string", "pattern": r"^\$[A-Za-z_][A-Za-z0-9_]*$", "description": "a block argument"}


def _doc(cls) -> str:
    """An op's description in the schema: its summary, then its docstring (the formula)."""
    return f"{cls.summary}\n\n{inspect.cleandoc(cls.__doc__ or '')}"


def _layer_models():
    common = {k: (f.annotation, f) for k, f in LayerEntry.model_fields.items() if k in ("name", "inputs", "repeat", "init")}
    models = []
    for kind in LAYER_KINDS:
        cls = BY_KIND[kind]
        fields = {k: (f.annotation, f) for k, f in cls.model_fields.items()}
        m = create_model(f"layer_{kind}", __config__=ConfigDict(extra="forbid", title=kind), __doc__=_doc(cls),
                         op=(Literal[kind], ...), **common, **fields)
        models.append(m)
    block_call = create_model("block_call", __config__=ConfigDict(extra="forbid"),
                              __doc__="A call of a block defined under 'blocks' (or in an included file).",
                              block=(str, ...), args=(dict[str, Any] | None, None), **common)
    return models, block_call


def _loss_models():
    models = []
    for kind in LOSS_KINDS:
        cls = BY_KIND[kind]
        if kind == "l2_penalty":
            continue
        fields = {k: (f.annotation, f) for k, f in cls.model_fields.items()}
        models.append(create_model(f"loss_{kind}", __config__=ConfigDict(extra="forbid", title=kind), __doc__=_doc(cls),
                                   op=(Literal[kind], ...), inputs=(list[str], Field(min_length=1)),
                                   l2=(float, Field(0.0, ge=0, description=LossDecl.model_fields["l2"].description)), **fields))
    return models


def json_schema() -> dict:
    layer_models, block_call = _layer_models()
    OpLayer = Union[tuple(layer_models)]  # noqa: UP007 - a runtime union
    op_layer = Field(discriminator="op")
    from typing import Annotated

    Layer = Union[Annotated[OpLayer, op_layer], block_call]
    Loss = Annotated[Union[tuple(_loss_models())], Field(discriminator="op")]
    Block = create_model("block", __base__=BlockDecl, layers=(list[Layer], Field(min_length=1)))
    Document = create_model("graphc_spec", __base__=Spec, layers=(list[Layer], Field(min_length=1)),
                            blocks=(dict[str, Block], {}), loss=(Loss | None, None))
    schema = Document.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "graphc spec"
    schema["description"] = ("A neural-network architecture for graphc. Inside blocks, any value may be a block "
                             "argument reference '$name'.")
    return schema
