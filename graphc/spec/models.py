"""The spec language's structure (DESIGN.md §4), as strict pydantic models.

Layer attributes are not part of these models: a layer entry's extra keys are its op's attributes,
validated by the op class itself once blocks and ``repeat`` are expanded (block arguments ``$name``
may stand in for any value until then). ``graphc schema`` merges the op classes into the JSON Schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")]  # "0" allowed: torchvision's layer2.0
#: the largest static size of one dimension of an input (and of a batch): 2^31 − 1, far beyond any
#: network that fits in memory; what it protects from is a typo that would ask NumPy for exabytes
MAX_DIM = 2**31 - 1
DimValue = Annotated[int, Field(ge=1, le=MAX_DIM)] | Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
InitName = Literal["xavier", "kaiming", "normal", "uniform", "zeros", "ones", "constant"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


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

    model_config = ConfigDict(extra="allow", strict=True, frozen=True, allow_inf_nan=False)
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


# --- the train: section (what graphc train reads) -----------------------------------------------

DATA_SETS = ("digits",)


class SplitDecl(Strict):
    """How examples are held out, reproducibly (``seed``; stratified by class for integer labels).

    ``test``: the fraction of all examples kept for the final test (when the data has no ``x_test``);
    ``val``: the fraction of the remaining training examples kept for validation (when the data has
    no ``x_val``); 0 means none (model selection and early stopping then watch the training split).
    """

    test: Annotated[float, Field(ge=0, lt=1)] = 0.3
    val: Annotated[float, Field(ge=0, lt=1)] = 0.1
    seed: int = 0
    stratify: bool = True


class NormalizeDecl(Strict):
    """Input normalisation, computed on the training split only and applied to every split.

    ``center``: subtract the training mean of each feature (``per_feature``, the course's mean
    image), one global mean (``global``) or nothing. ``scale``: then divide by the standard deviation
    of the centred training data (``std``, one number), by its largest absolute value (``max``) or
    not at all (``none``).
    """

    center: Literal["per_feature", "global", "none"] = "per_feature"
    scale: Literal["std", "max", "none"] = "std"


class LRDecayDecl(Strict):
    """Learning-rate decay per epoch ``e`` (starting at 0), from the course:
    ``step``: ``lr·rate^⌊e/every⌋``; ``exponential``: ``lr·rate^e``; ``inverse_time`` (1/t):
    ``lr/(1 + rate·e)``; ``none``: ``lr``."""

    kind: Literal["none", "step", "exponential", "inverse_time"] = "none"
    rate: Annotated[float, Field(gt=0)] = 0.5
    every: Annotated[int, Field(ge=1)] = 1


class EarlyStoppingDecl(Strict):
    """Stop when the monitored metric has not improved by more than ``min_delta`` for ``patience`` epochs."""

    patience: Annotated[int, Field(ge=1)] = 5
    min_delta: Annotated[float, Field(ge=0)] = 0.0


class TrainDecl(Strict):
    """How ``graphc train`` trains the spec (the loss is the spec's ``loss:``).

    ``data``: ``digits`` (scikit-learn's 8×8 digits, 1,797 examples, no download) or a path to an
    ``.npz`` (relative to the spec) with ``x_train``, ``y_train`` and optionally ``x_val``/``y_val``,
    ``x_test``/``y_test``. Features are reshaped to the spec's data input when the element counts
    match (64 digits pixels → ``(N, 1, 8, 8)``). ``optimizer`` and its hyperparameters (``momentum``
    μ for momentum/Nesterov, ``rho`` ρ for RMSProp, ``beta1``, ``beta2``, ``eps`` for Adam/RMSProp);
    ``l2`` overrides the loss's L2 strength; ``init`` maps parameter names or glob patterns
    (``fc1.weight``, ``*.bias``) to initialisers, overriding the spec's; ``monitor`` picks the
    validation metric that selects ``best.npz`` and drives ``early_stopping``; ``overfit_epochs``
    caps ``--overfit K`` runs, which stop at 100 % training accuracy.
    """

    data: str = "digits"
    split: SplitDecl = SplitDecl()
    normalize: NormalizeDecl = NormalizeDecl()
    optimizer: Literal["sgd", "momentum", "nesterov", "rmsprop", "adam"] = "adam"
    lr: Annotated[float, Field(gt=0)] = 1e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    rho: Annotated[float, Field(gt=0, lt=1)] = 0.99
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.999
    eps: Annotated[float, Field(gt=0)] = 1e-8
    lr_decay: LRDecayDecl = LRDecayDecl()
    l2: Annotated[float, Field(ge=0)] | None = None
    init: dict[str, InitName | InitDecl] = {}
    epochs: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    batch_size: Annotated[int, Field(ge=1, le=MAX_DIM)] = 64
    eval_batch_size: Annotated[int, Field(ge=1, le=MAX_DIM)] = 1024
    shuffle: bool = True
    seed: int = 0
    monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    early_stopping: EarlyStoppingDecl | None = None
    overfit_epochs: Annotated[int, Field(ge=1)] = 200

    @field_validator("data")
    @classmethod
    def _data_source(cls, v: str) -> str:
        if v not in DATA_SETS and not v.endswith(".npz"):
            raise ValueError(f"must be a data set name ({', '.join(DATA_SETS)}) or a path to an .npz file")
        return v


class LossDecl(BaseModel):
    """The loss: a loss op over outputs and label inputs, plus optional L2 weight regularisation
    ``l2`` (λ in ``(λ/2)·Σ‖W‖²`` over every trainable parameter of rank ≥ 2, i.e. weights, not biases)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True, allow_inf_nan=False)
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
    #: parameter values to start from (``graphc import`` writes them beside the spec)
    params: str | None = Field(None, description="a .npz of parameter values by name (<layer>.<param>), relative to the spec: "
                                                  "run, export, check-grad and train start from them instead of the initialisers")
    inputs: dict[Name, InputDecl] = Field(min_length=1)
    blocks: dict[Name, BlockDecl] = {}
    layers: list[LayerEntry] = Field(min_length=1)
    outputs: list[str] | dict[Name, str] | None = None
    loss: LossDecl | None = None
    train: TrainDecl | None = None
    tune: TuneDecl | None = None


class Library(Strict):
    """An included file: blocks (and further includes) only."""

    description: str | None = None
    include: list[str] = []
    blocks: dict[Name, BlockDecl] = {}


RESERVED_LAYER_KEYS = frozenset(LayerEntry.model_fields)
