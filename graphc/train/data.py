"""Training data: a source (the 8×8 digits by name, or an ``.npz``), a reproducible
train/validation/test split, normalisation fitted on the training split only, and the arrays shaped
and typed for the spec's data and label inputs.

The split: the data's own ``x_test``/``x_val`` when it has them; otherwise ``split.test`` of all
examples is held out for the test, then ``split.val`` of the rest for validation, both drawn with
``split.seed`` and stratified by class when the labels are integers, so every run of a spec sees
the same three sets. The draw is scikit-learn's ``train_test_split`` (``ShuffleSplit`` /
``StratifiedShuffleSplit``, ``random_state=seed``) step for step, in NumPy: the same seed gives
the same sets as before, without importing scikit-learn and SciPy (a second of start-up).

``digits`` is scikit-learn's copy of the UCI optical digits test set (1,797 8×8 images, pixels
0–16), shipped as ``graphc/data/digits.npz`` (source and licence in ``graphc/data/README.md``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GraphcError
from ..files import array_headers, load_arrays, save_arrays
from ..finite import require_finite

DIGITS = Path(__file__).resolve().parent.parent / "data" / "digits.npz"

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Normalization:
    """``x' = (x − mean) / scale``; ``mean`` has one example's shape (or is a scalar), ``scale`` is a number."""

    mean: np.ndarray
    scale: float

    def apply(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale).astype(np.float32)

    def save(self, path) -> None:
        save_arrays(path, {"mean": np.asarray(self.mean, np.float32), "scale": np.asarray(self.scale, np.float32)})

    @classmethod
    def load(cls, path) -> Normalization:
        arrays = load_arrays(path, "normalization")
        return cls(arrays["mean"], float(arrays["scale"]))


def fit_normalization(x: np.ndarray, center: str, scale: str) -> Normalization:
    """Statistics of the training split (see :class:`~graphc.spec.models.NormalizeDecl`)."""
    x = x.astype(np.float64)
    if center == "per_feature":
        mean = x.mean(axis=0)
    elif center == "global":
        mean = np.asarray(x.mean())
    else:
        mean = np.zeros(())
    centred = x - mean
    s = {"std": centred.std(), "max": np.abs(centred).max(initial=0.0), "none": 1.0}[scale]
    s = float(s) if s > 0 else 1.0
    return Normalization(mean.astype(np.float32), s)


def load_source(source: str, spec_dir: Path, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Raw arrays ``x_train``, ``y_train`` (and any of ``x_val``, ``y_val``, ``x_test``, ``y_test``).
    The file's ``.npy`` headers are read first: arrays that would inflate beyond ``max_bytes``
    (default: ``--max-memory``'s default) are refused before any of them is read."""
    if source == "digits":
        with np.load(DIGITS, allow_pickle=False) as digits:
            return {"x_train": digits["x"].astype(np.float32), "y_train": digits["y"].astype(np.int64)}
    path = Path(source)
    if not path.is_absolute():
        path = spec_dir / path
    require_data_fits(array_headers(path, "train.data"), path, max_bytes)
    arrays = load_arrays(path, "train.data")
    for need in ("x_train", "y_train"):
        if need not in arrays:
            raise GraphcError(f"train.data: {path} has no '{need}' (it has: {', '.join(sorted(arrays)) or 'nothing'})",
                              hint="save x_train, y_train and optionally x_val, y_val, x_test, y_test with numpy.savez")
    for part in ("train", "val", "test"):
        x, y = arrays.get(f"x_{part}"), arrays.get(f"y_{part}")
        if (x is None) != (y is None):
            raise GraphcError(f"train.data: {path} has {'x' if y is None else 'y'}_{part} but not {'y' if y is None else 'x'}_{part}")
        if x is not None and len(x) != len(y):
            raise GraphcError(f"train.data: {path}: x_{part} has {len(x)} examples but y_{part} has {len(y)}")
    return arrays


def _approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Examples per class in a stratified draw of ``draws``: ``⌊counts·draws/Σcounts⌋``, then one more
    for the classes with the largest remainders (ties broken by ``rng``) until ``draws`` are taken
    (scikit-learn's ``_approximate_mode``)."""
    continuous = counts / counts.sum() * draws
    floored = np.floor(continuous)
    need = int(draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.where(remainder == value)
            now = min(len(tied), need)
            floored[rng.choice(tied, size=now, replace=False)] += 1
            need -= now
            if need == 0:
                break
    return floored.astype(int)


def shuffle_split(n: int, n_out: int, seed: int, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) example indices, ``n_out`` held out: a random permutation's head, or with
    ``classes`` a per-class draw of sizes :func:`_approximate_mode` — scikit-learn's
    ``train_test_split(test_size=n_out, random_state=seed, stratify=classes)`` indices exactly."""
    rng = np.random.RandomState(seed)
    n_in = n - n_out
    if classes is None:
        permutation = rng.permutation(n)
        return permutation[n_out:], permutation[:n_out]
    _, inverse, counts = np.unique(classes, return_inverse=True, return_counts=True)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    n_in_class = _approximate_mode(counts, n_in, rng)
    n_out_class = _approximate_mode(counts - n_in_class, n_out, rng)
    kept, held = [], []
    for i, count in enumerate(counts):
        chosen = members[i].take(rng.permutation(count), mode="clip")
        kept.extend(chosen[: n_in_class[i]])
        held.extend(chosen[n_in_class[i]: n_in_class[i] + n_out_class[i]])
    return rng.permutation(kept), rng.permutation(held)


def split(arrays: dict[str, np.ndarray], test: float, val: float, seed: int, stratify: bool) -> dict[str, Split]:
    """Train/validation/test splits (empty ones have zero examples)."""

    def carve(x, y, fraction, salt):
        n_out = math.ceil(len(x) * fraction) if fraction > 0 else 0
        if n_out == 0:
            return (x, y), (x[:0], y[:0])
        if n_out >= len(x):
            raise GraphcError(f"train.split: holding out {fraction:g} of {len(x)} examples leaves none to train on")
        classes = y if stratify and y.ndim == 1 and y.dtype.kind in "iu" else None
        if classes is not None and (np.unique(classes, return_counts=True)[1].min() < 2
                                    or min(n_out, len(x) - n_out) < len(np.unique(classes))):
            classes = None  # too few examples per class to stratify
        kept, held = shuffle_split(len(x), n_out, seed + salt, classes)
        return (x[kept], y[kept]), (x[held], y[held])

    x, y = arrays["x_train"], arrays["y_train"]
    if "x_test" in arrays:
        test_part = (arrays["x_test"], arrays["y_test"])
    else:
        (x, y), test_part = carve(x, y, test, 0)
    if "x_val" in arrays:
        val_part = (arrays["x_val"], arrays["y_val"])
    else:
        (x, y), val_part = carve(x, y, val, 1)
    return {"train": Split(x, y), "val": Split(*val_part), "test": Split(*test_part)}


def shape_features(x: np.ndarray, want: tuple, name: str, what: str) -> np.ndarray:
    """``x`` reshaped to the input's shape ``(N, …)`` when its per-example element count matches."""
    rest = want[1:]
    if any(not isinstance(d, int) for d in rest):
        if x.ndim == len(want):
            return x
        raise GraphcError(f"{what}: examples of shape {x.shape[1:]} do not fit input '{name}' {tuple(want)}")
    if tuple(x.shape[1:]) == tuple(rest):
        return x
    if math.prod(x.shape[1:]) != math.prod(rest):
        raise GraphcError(f"{what}: each example has {math.prod(x.shape[1:])} values {tuple(x.shape[1:])}, but input '{name}' "
                          f"({', '.join(map(str, want))}) takes {math.prod(rest)}",
                          hint="use a spec whose input matches the data (the digits have 64 = 8×8 pixels)")
    return x.reshape((len(x),) + tuple(rest))


def shape_labels(y: np.ndarray, want_shape: tuple, want_dtype: str, name: str, what: str) -> np.ndarray:
    """Labels as the label input wants them: int64 class indices, float targets, or one-hot floats
    (integer labels for a float ``(N, C)`` input)."""
    rest = want_shape[1:]
    if want_dtype == "int64":
        if y.dtype.kind not in "iu":
            raise GraphcError(f"{what}: labels have dtype {y.dtype}, but input '{name}' takes int64 class indices")
        return shape_features(y.astype(np.int64), want_shape, name, what) if rest else y.astype(np.int64).reshape(-1)
    if y.dtype.kind in "iu" and y.ndim == 1 and len(rest) == 1 and isinstance(rest[0], int) and rest[0] > 1:
        if y.min(initial=0) < 0 or y.max(initial=0) >= rest[0]:
            raise GraphcError(f"{what}: labels range over {y.min()}..{y.max()}, input '{name}' has {rest[0]} classes")
        return np.eye(rest[0], dtype=np.float32)[y]
    return shape_features(y.astype(np.float32), want_shape, name, what)


def fingerprint(splits: dict[str, Split]) -> str:
    """SHA-256 of the prepared arrays: a resumed run checks that it trains on the same data."""
    h = hashlib.sha256()
    for part in SPLITS:
        for a in (splits[part].x, splits[part].y):
            h.update(f"{part}{a.dtype}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def require_data_fits(headers: dict[str, tuple[tuple[int, ...], np.dtype]], path: Path, max_bytes: int | None) -> None:
    """Refuse a data file whose arrays hold more than ``max_bytes`` once read (Python integers from
    the headers: a small compressed file of zeros is not inflated to find out)."""
    from ..ir.memory import default_max_memory, format_bytes

    limit = max_bytes if max_bytes is not None else default_max_memory()
    sizes = {name: math.prod(shape) * dtype.itemsize for name, (shape, dtype) in headers.items()}
    need = sum(sizes.values())
    if need > limit:
        largest = max(sizes, key=sizes.get)
        raise GraphcError(f"train.data: {path} holds {format_bytes(need)} ({need:,} bytes) of arrays, more than "
                          f"--max-memory {format_bytes(limit)}; the largest is '{largest}' {headers[largest][0]} "
                          f"{headers[largest][1]}, {format_bytes(sizes[largest])}",
                          hint="use a smaller data file, or raise --max-memory")


def prepare(train_decl, graph, data_input: str, label_input: str, spec_dir: Path, overfit: int | None = None,
            allow_nonfinite: bool = False, max_bytes: int | None = None):
    """(splits ready to feed, the normalisation fitted on the training split). NaN/Inf in the data
    are refused (array name, first bad index) unless ``allow_nonfinite``."""
    arrays = load_source(train_decl.data, spec_dir, max_bytes)
    if not allow_nonfinite:
        require_finite(arrays, f"train.data ({train_decl.data})")
    s = train_decl.split
    parts = split(arrays, s.test, s.val, s.seed, s.stratify)
    if overfit is not None:
        if overfit > len(parts["train"]):
            raise GraphcError(f"--overfit {overfit}: the training split has only {len(parts['train'])} examples")
        parts = {"train": Split(parts["train"].x[:overfit], parts["train"].y[:overfit]),
                 "val": Split(parts["train"].x[:0], parts["train"].y[:0]), "test": parts["test"]}
    x_type, y_type = graph.nodes[data_input]["type"], graph.nodes[label_input]["type"]
    source = f"train.data ({train_decl.data})"
    shaped = {p: Split(shape_features(parts[p].x, x_type.shape, data_input, source),
                       shape_labels(parts[p].y, y_type.shape, y_type.dtype, label_input, source)) for p in SPLITS}
    norm = fit_normalization(shaped["train"].x, train_decl.normalize.center, train_decl.normalize.scale)
    ready = {p: Split(norm.apply(shaped[p].x) if len(shaped[p]) else shaped[p].x.astype(np.float32), shaped[p].y) for p in SPLITS}
    return ready, norm
