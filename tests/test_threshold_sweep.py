"""`kit ensemble --tune-threshold`: the sorted sweep finds the threshold (and accuracy) that one
pass per candidate found, ties included, and copes with 100,000 rows."""

import numpy as np
import pytest

from kit.evaluate.blend import tune_threshold


def quadratic_threshold(y: np.ndarray, p1: np.ndarray) -> tuple[float, float]:
    """The reference: every candidate (0.5 and each distinct p1) scored by a pass over the rows;
    class 1 at p1 >= t; the first (lowest) of the best wins."""
    candidates = np.unique(np.concatenate([[0.5], p1]))
    accs = [float(((p1 >= t) == y).mean()) for t in candidates]
    best = int(np.argmax(accs))
    return float(candidates[best]), accs[best]


@pytest.mark.parametrize("seed", range(20))
def test_the_sweep_equals_one_pass_per_candidate_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    p1 = rng.integers(0, int(rng.integers(2, 30)), n) / 20  # few distinct values: many ties
    p1 = p1.astype(np.float32) if seed % 2 else p1  # a model's float32 probabilities too
    y = rng.integers(0, 2, n) if seed % 3 else (p1 > rng.random(n)).astype(int)
    assert tune_threshold(y, p1) == quadratic_threshold(y, p1)


def test_ties_in_accuracy_keep_the_lowest_threshold_and_p_at_the_threshold_is_class_1():
    y, p1 = np.array([0, 1, 1]), np.array([0.3, 0.6, 0.6])
    assert tune_threshold(y, p1) == (0.5, 1.0)  # 0.5 and 0.6 both get all right: the lower one
    y, p1 = np.array([0, 1]), np.array([0.55, 0.7])
    assert tune_threshold(y, p1) == (0.7, 1.0)  # the row at p1 = 0.7 is cut to class 1


def test_a_hundred_thousand_rows_are_tuned():
    """One pass per distinct probability took 9 s a call here, and a 5-fold ensemble makes 6
    (the test set's threshold, then each fold's); the sweep sorts once."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100_000)
    p1 = np.clip(0.3 * y + 0.7 * rng.random(100_000), 0, 1)
    t, acc = tune_threshold(y, p1)
    assert acc == float(((p1 >= t) == y).mean()) and acc > 0.6
    assert acc >= float(((p1 >= 0.5) == y).mean())
