"""The digits shipped with graphc and the split drawn without scikit-learn: both equal to what
scikit-learn gives (it is installed with the test suite, never imported by ``graphc train``)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from graphc.train.data import load_source, shuffle_split, split


def test_the_shipped_digits_are_scikit_learns(tmp_path):
    got = load_source("digits", tmp_path)
    want = load_digits()
    assert got["x_train"].dtype == np.float32 and got["y_train"].dtype == np.int64
    np.testing.assert_array_equal(got["x_train"], want.data.astype(np.float32))
    np.testing.assert_array_equal(got["y_train"], want.target)


CASES = [(n, n_out, seed, classes) for n, classes in ((1797, 10), (500, 5), (37, 3), (101, 2), (64, None), (10, None))
         for n_out in sorted({max(1, n // 10), max(1, n * 3 // 10), n // 2, n - 3 if classes is None else n - 2 * (classes or 1)})
         for seed in (0, 1, 7, 12345)]


@pytest.mark.parametrize("n,n_out,seed,n_classes", CASES)
def test_the_split_draws_scikit_learns_indices(n, n_out, seed, n_classes):
    rng = np.random.default_rng(seed)
    classes = None if n_classes is None else rng.integers(0, n_classes, n)
    if classes is not None and (np.bincount(classes).min() < 2 or min(n_out, n - n_out) < n_classes):
        classes = None
    index = np.arange(n)
    want_in, want_out = train_test_split(index, test_size=n_out, random_state=seed, stratify=classes)
    got_in, got_out = shuffle_split(n, n_out, seed, classes)
    np.testing.assert_array_equal(got_in, want_in)
    np.testing.assert_array_equal(got_out, want_out)


def test_uneven_classes_split_as_before():
    """Remainders tied between classes are broken by the seeded generator, as scikit-learn does."""
    y = np.repeat(np.arange(7), [2, 3, 5, 8, 13, 21, 34])
    x = np.arange(len(y), dtype=np.float32)[:, None]
    parts = split({"x_train": x, "y_train": y}, 0.3, 0.1, 3, True)
    want_in, want_test = train_test_split(x, test_size=int(np.ceil(len(x) * 0.3)), random_state=3, stratify=y)
    np.testing.assert_array_equal(parts["test"].x, want_test)
    assert len(parts["train"]) + len(parts["val"]) == len(want_in)
