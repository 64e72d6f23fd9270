"""The metrics Kaggle scores image classification with, and which way each one is better.

Every function takes the class indices `y` (N,) and class probabilities `probs` (N, classes);
a multi-label task's `y` is multi-hot (N, tags) and its `probs` one sigmoid per tag.
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


def mauc(y: np.ndarray, probs: np.ndarray) -> float:
    """Mean column-wise ROC AUC (Plant Pathology): each class's (tag's) column against the rest,
    averaged over the columns that hold both a positive and a negative."""
    truth = y if y.ndim == 2 else np.eye(probs.shape[1])[y]
    cols = [c for c in range(probs.shape[1]) if 0 < truth[:, c].sum() < len(truth)]
    if not cols:
        return float("nan")
    return float(np.mean([roc_auc_score(truth[:, c], probs[:, c]) for c in cols]))


def predicted_tags(probs: np.ndarray) -> np.ndarray:
    """The tags a multi-label submission lists: each at p >= 0.5 (per-tag thresholds, when tuned,
    decide first: kit/evaluate/thresholds.py); a row with none keeps its likeliest tag."""
    on = probs >= 0.5
    none = ~on.any(1)
    on[none, probs[none].argmax(1)] = True
    return on


def fbeta_samples(y: np.ndarray, probs: np.ndarray, beta: float) -> float:
    """F-beta of each image's predicted tags against its true ones, averaged over the images
    (Kaggle's samples average; an image with no right tag scores 0)."""
    pred, truth = predicted_tags(probs), y > 0.5
    tp = (pred & truth).sum(1)
    precision = tp / np.maximum(pred.sum(1), 1)
    recall = tp / np.maximum(truth.sum(1), 1)
    b2 = beta**2
    f = (1 + b2) * precision * recall / np.maximum(b2 * precision + recall, 1e-12)
    return float(f.mean())


def f2(y: np.ndarray, probs: np.ndarray) -> float:
    """Samples-averaged F2 (Planet): recall counts four times as much as precision."""
    return fbeta_samples(y, probs, 2)


def f1_samples(y: np.ndarray, probs: np.ndarray) -> float:
    return fbeta_samples(y, probs, 1)


def map_at_k(y: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Mean average precision at k with one right label per image: 1/rank of the right label
    among the k likeliest (ties in class order), 0 when it is not among them."""
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    hits = top == np.asarray(y)[:, None]
    return float((hits / np.arange(1, top.shape[1] + 1)).sum(1).mean())


def map5(y: np.ndarray, probs: np.ndarray) -> float:
    """MAP@5 (Humpback Whale Identification)."""
    return map_at_k(y, probs, 5)


def map3(y: np.ndarray, probs: np.ndarray) -> float:
    """MAP@3 (Quick, Draw!)."""
    return map_at_k(y, probs, 3)


METRICS = {
    f.__name__: f
    for f in (accuracy, auc, logloss, f1_macro, f1_micro, qwk, mauc, f2, f1_samples, map5, map3)
}
LOWER_IS_BETTER = {"logloss"}
# Scored on probabilities: the submission holds probabilities, never hard labels.
ON_PROBABILITIES = {"auc", "logloss", "mauc"}
# Scored on several labels per image (y multi-hot), the tags decided by per-tag thresholds.
MULTI_LABEL = {"f2", "f1_samples"}
# Scored on the k likeliest labels, best first: the submission lists k labels per image.
TOP_K = {"map5": 5, "map3": 3}


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


def learner_metric(metric: str, multi_label: bool = False):
    """The metric as a fastai metric over the whole validation set, named after `metric`, on
    softmax probabilities (sigmoid ones for a multi-label task)."""
    from fastai.metrics import AccumMetric, ActivationType
    from fastai.metrics import accuracy as batch_accuracy

    if metric == "accuracy" and not multi_label:
        return batch_accuracy  # averaged per batch: the same number, without keeping the preds
    act = ActivationType.Sigmoid if multi_label else ActivationType.Softmax
    return AccumMetric(METRICS[metric], dim_argmax=-1, activation=act, to_np=True,
                       invert_arg=True, flatten=False, name=metric)  # fmt: skip
