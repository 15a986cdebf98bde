"""The spec language's structure (DESIGN.md §4), as strict pydantic models.

Layer attributes are not part of these models: a layer entry's extra keys are its op's attributes,
validated by the op class itself once blocks and ``repeat`` are expanded (block arguments ``$name``
may stand in for any value until then). ``graphc schema`` merges the op classes into the JSON Schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")]  # "0" allowed: torchvision's layer2.0
DimValue = Annotated[int, Field(ge=1)] | Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
InitName = Literal["xavier", "kaiming", "normal", "uniform", "zeros", "ones", "constant"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class InputDecl(Strict):
    """A graph input: ``shape`` lists sizes, with names (``N``) for symbolic dims."""

    shape: list[DimValue] = Field(min_length=0, max_length=8)
    dtype: Literal["float32", "float64", "int64"] = "float32"


class InitDecl(Strict):
    """An initialiser with options: ``{kind: normal, std: 0.01}``, ``{kind: constant, value: 0.1}``."""

    kind: InitName
    std: float = Field(0.01, gt=0)
    limit: float = Field(0.05, gt=0)
    value: float = 0.0


class LayerEntry(BaseModel):
    """One entry of ``layers``: an op application or a block call.

    ``op`` or ``block`` (exactly one); ``inputs`` names earlier layers, inputs or block inputs (default:
    the previous entry); ``repeat`` chains that many copies; ``init`` maps a parameter name to an
    initialiser; ``args`` are a block call's arguments; every other key is an op attribute.
    """

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    name: Name | None = None
    op: str | None = None
    block: str | None = None
    inputs: list[str] | None = None
    repeat: Annotated[int, Field(ge=1, le=10_000)] | str | None = None
    args: dict[str, Any] | None = None
    init: dict[str, InitName | InitDecl] | None = None


class BlockDecl(Strict):
    """A reusable, parameterised sub-graph.

    ``args`` maps each argument to its default (``null``: required); ``inputs`` names the block's
    inputs (default ``[x]``); ``output`` names the layer whose output is the block's (default: last).
    """

    args: dict[str, Any] = {}
    inputs: list[Name] = ["x"]
    layers: list[LayerEntry] = Field(min_length=1)
    output: str | None = None
    description: str | None = None


class LossDecl(BaseModel):
    """The loss: a loss op over outputs and label inputs, plus optional L2 weight regularisation
    ``l2`` (λ in ``(λ/2)·Σ‖W‖²`` over every trainable parameter of rank ≥ 2, i.e. weights, not biases)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    op: str
    inputs: list[str] = Field(min_length=1)
    l2: Annotated[float, Field(ge=0)] = 0.0


class TuneDecl(Strict):
    """A hyperparameter search for ``graphc tune`` (the command line adds to it): ``grid`` maps a dotted
    path (as ``--set``) to values, ``random`` to a distribution such as ``loguniform(1e-4, 1e-1)``."""

    grid: dict[str, list[Any]] = {}
    random: dict[str, str] = {}
    trials: Annotated[int, Field(ge=1)] | None = None
    seed: int | None = None


class Spec(Strict):
    """A whole spec file."""

    name: str | None = None
    description: str | None = None
    include: list[str] = []
    inputs: dict[Name, InputDecl] = Field(min_length=1)
    blocks: dict[Name, BlockDecl] = {}
    layers: list[LayerEntry] = Field(min_length=1)
    outputs: list[str] | dict[Name, str] | None = None
    loss: LossDecl | None = None
    train: trainspec.TrainDecl | None = None
    tune: TuneDecl | None = None


class Library(Strict):
    """An included file: blocks (and further includes) only."""

    description: str | None = None
    include: list[str] = []
    blocks: dict[Name, BlockDecl] = {}


RESERVED_LAYER_KEYS = frozenset(LayerEntry.model_fields)

from . import trainspec  # noqa: E402 - the train section's models use this module's (resolved on first use)
