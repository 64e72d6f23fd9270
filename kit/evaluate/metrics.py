"""The metrics Kaggle scores image classification with, and which way each one is better.

Every function takes the class indices `y` (N,) and class probabilities `probs` (N, classes).
Whatever picks "the best" (checkpoint, early stopping, TTA, snapshots, blends) asks
`greater_is_better`.
"""

import numpy as np
from sklearn.metrics import cohen_kappa_score, f1_score, roc_auc_score

# Kaggle clips probabilities to [eps, 1 - eps] and renormalises each row before taking logs.
LOGLOSS_EPS = 1e-15


def accuracy(y: np.ndarray, probs: np.ndarray) -> float:
    return float((probs.argmax(1) == y).mean())


def auc(y: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC of class 1 for a binary task; for more classes the one-vs-rest macro average over
    the classes that `y` holds (a small fold may lack a rare class, whose AUC is undefined).
    NaN only when `y` holds a single class."""
    if probs.shape[1] == 2:
        return float(roc_auc_score(y, probs[:, 1])) if len(np.unique(y)) == 2 else float("nan")
    scored = [k for k in np.unique(y) if (y != k).any()]
    if not scored:
        return float("nan")
    return float(np.mean([roc_auc_score(y == k, probs[:, k]) for k in scored]))


def logloss(y: np.ndarray, probs: np.ndarray) -> float:
    p = np.clip(probs.astype(np.float64), LOGLOSS_EPS, 1 - LOGLOSS_EPS)
    p /= p.sum(1, keepdims=True)
    return float(-np.log(p[np.arange(len(y)), y]).mean())


def f1_macro(y: np.ndarray, probs: np.ndarray) -> float:
    return float(f1_score(y, probs.argmax(1), average="macro"))


def f1_micro(y: np.ndarray, probs: np.ndarray) -> float:
    return float(f1_score(y, probs.argmax(1), average="micro"))


def qwk(y: np.ndarray, probs: np.ndarray) -> float:
    """Quadratic weighted kappa: classes in their sorted order are the ordinal grades, each
    grade's distance kept when a grade is never predicted or absent from `y`; 1.0 where labels
    and predictions are all the same one grade (kappa's 0/0)."""
    pred, grades = probs.argmax(1), np.arange(probs.shape[1])
    if (pred == y).all() and len(np.unique(y)) == 1:
        return 1.0
    return float(cohen_kappa_score(y, pred, labels=grades, weights="quadratic"))


METRICS = {f.__name__: f for f in (accuracy, auc, logloss, f1_macro, f1_micro, qwk)}
LOWER_IS_BETTER = {"logloss"}
# Scored on probabilities: the submission holds probabilities, never hard labels.
ON_PROBABILITIES = {"auc", "logloss"}


def score(metric: str, y: np.ndarray, probs: np.ndarray) -> float:
    return METRICS[metric](np.asarray(y), np.asarray(probs))


def greater_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def best(metric: str, scores: dict):
    """The key of the best of `scores` by `metric`'s direction; a tie goes to the first."""
    sign = 1 if greater_is_better(metric) else -1
    return max(scores, key=lambda k: sign * scores[k])


def at_least_as_good(metric: str, a: float, b: float) -> bool:
    return a >= b if greater_is_better(metric) else a <= b


def learner_metric(metric: str):
    """The metric as a fastai metric over the whole validation set, named after `metric`."""
    from fastai.metrics import AccumMetric, ActivationType
    from fastai.metrics import accuracy as batch_accuracy

    if metric == "accuracy":
        return batch_accuracy  # averaged per batch: the same number, without keeping the preds
    return AccumMetric(METRICS[metric], dim_argmax=-1, activation=ActivationType.Softmax,
                       to_np=True, invert_arg=True, flatten=False, name=metric)  # fmt: skip
