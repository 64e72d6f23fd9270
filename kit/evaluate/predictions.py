"""Predictions as they travel from a model to the submission: per item, class probabilities
without and (when the recipe asks) with test-time augmentation; combined over folds, scored,
and written as CSV."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kit.evaluate.metrics import score


@dataclass
class Predictions:
    """Class probabilities (items, classes) for `ids`, in their order."""

    ids: list  # training item names (validation), or submission ids (test)
    plain: np.ndarray
    tta: np.ndarray | None = None  # averaged over the test-time augmentation views

    def chosen(self, tta: bool) -> np.ndarray:
        return self.tta if tta else self.plain

    def views(self) -> dict[bool, np.ndarray]:
        """{False: plain, True: with TTA}, for those it has."""
        return {False: self.plain} | ({True: self.tta} if self.tta is not None else {})


def concatenated(parts: list[Predictions]) -> Predictions:
    """Every part's items in turn: out-of-fold predictions from each fold's held-out items."""
    tta = [p.tta for p in parts]
    return Predictions(
        ids=[i for p in parts for i in p.ids],
        plain=np.concatenate([p.plain for p in parts]),
        tta=np.concatenate(tta) if all(t is not None for t in tta) else None,
    )


def averaged(parts: list[Predictions]) -> Predictions:
    """The same items' probabilities averaged over models (folds, snapshots)."""
    tta = [p.tta for p in parts]
    return Predictions(
        ids=parts[0].ids,
        plain=np.mean([p.plain for p in parts], axis=0),
        tta=np.mean(tta, axis=0) if all(t is not None for t in tta) else None,
    )


def scores(metric: str, y: np.ndarray, p: Predictions) -> dict[bool, float]:
    """`metric` of the plain predictions (False) and of those with TTA (True)."""
    return {tta: score(metric, y, probs) for tta, probs in p.views().items()}


def multi_hot(rows: list, classes: list) -> np.ndarray:
    """Each row's tags (a list of class names) as a 0/1 row over `classes`: a multi-label y."""
    index = {str(c): i for i, c in enumerate(classes)}
    y = np.zeros((len(rows), len(classes)), dtype=np.float32)
    for i, tags in enumerate(rows):
        y[i, [index[str(t)] for t in tags]] = 1
    return y


def label_text(y: np.ndarray, classes: list) -> list:
    """Each item's label as CSVs write it: its class, or (multi-hot `y`) its tags, spaced."""
    if y.ndim == 1:
        return [classes[i] for i in y]
    return [" ".join(str(classes[j]) for j in np.flatnonzero(row)) for row in y]


def table(
    p: Predictions, key: str, classes: list, y: np.ndarray | None = None, extra: dict | None = None
) -> pd.DataFrame:
    """One row per item: its id under `key`, the `extra` columns, its label when `y` is known,
    then p_<class> and p_<class>_tta."""
    columns = {key: p.ids, **(extra or {})}
    if y is not None:
        columns["label"] = label_text(y, classes)
    for tta, probs in p.views().items():
        for c, label in enumerate(classes):
            columns[f"p_{label}{'_tta' if tta else ''}"] = probs[:, c]
    return pd.DataFrame(columns)  # at once: a column at a time fragments a frame of many classes
