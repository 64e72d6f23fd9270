"""Metrics on the folds real data gives: a class absent from a small validation fold, a grade
never predicted. Each is a number (never an exception), and the one Kaggle would compute."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from kit.evaluate.metrics import score

RNG = np.random.default_rng(0)
PROBS = RNG.dirichlet(np.ones(4), 40)  # 4 classes
Y_WITHOUT_2 = RNG.choice([0, 1, 3], 40)  # class 2 is absent from this fold


def test_multiclass_auc_averages_the_classes_the_fold_holds():
    got = score("auc", Y_WITHOUT_2, PROBS)
    each = [roc_auc_score(Y_WITHOUT_2 == k, PROBS[:, k]) for k in (0, 1, 3)]
    assert got == pytest.approx(np.mean(each))


def test_auc_of_a_fold_with_one_class_is_nan_not_an_error():
    assert np.isnan(score("auc", np.zeros(5, int), PROBS[:5]))
    assert np.isnan(score("auc", np.ones(5, int), np.full((5, 2), 0.5)))


def test_log_loss_with_a_class_absent_from_the_fold():
    p = PROBS / PROBS.sum(1, keepdims=True)
    expected = -np.mean(np.log(p[np.arange(40), Y_WITHOUT_2]))
    assert score("logloss", Y_WITHOUT_2, PROBS) == pytest.approx(expected)


def test_qwk_keeps_the_distance_of_grades_never_predicted():
    """Grades 0..4; 2 and 3 never predicted and 3 absent from the labels: 4 is still two grades
    from 2, not one (sklearn without labels would close the gap)."""
    y = np.array([0, 1, 2, 4, 4, 0, 1, 2])
    pred = np.array([0, 1, 4, 4, 1, 0, 0, 4])
    probs = np.eye(5)[pred]
    expected = cohen_kappa_score(y, pred, labels=range(5), weights="quadratic")
    assert score("qwk", y, probs) == pytest.approx(expected)
    assert expected != pytest.approx(cohen_kappa_score(y, pred, weights="quadratic"))


def test_qwk_of_a_fold_all_one_grade():
    one = np.eye(5)[[2, 2, 2]]
    assert score("qwk", np.array([2, 2, 2]), one) == 1.0
    assert score("qwk", np.array([2, 2, 2]), np.eye(5)[[2, 3, 2]]) == 0.0
