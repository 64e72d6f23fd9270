"""The interpretation plots of a binary task show the classifier that is submitted: its labels
are the submission's (the argmax, or p_1 >= the tuned threshold of `kit ensemble
--tune-threshold`), not those of the ROC curve's best cut (Youden's), which nothing submits."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import confusion_matrix, roc_curve

from kit.data.submission import make_submission
from kit.ensemble import thresholded
from kit.evaluate.interpret import decided, interpret
from kit.recipe import Recipe

CLASSES = ["native", "invasive"]
RNG = np.random.default_rng(0)
Y = np.repeat([0, 1], 20)
# an underconfident model: the 1s score 0.25-0.6, the 0s 0.05-0.4, so the ROC's best cut sits
# far below 0.5 and its labels differ from the argmax's on many rows
P1 = np.where(Y == 1, RNG.uniform(0.25, 0.6, 40), RNG.uniform(0.05, 0.4, 40))
PROBS = np.stack([1 - P1, P1], 1)


def youden(y, p1) -> float:
    fpr, tpr, cuts = roc_curve(y, p1)
    return float(cuts[np.argmax(tpr - fpr)])


def submitted(probs: np.ndarray) -> np.ndarray:
    """The class indices a label submission writes for `probs`."""
    r = Recipe(name="x", slug="x", metric="accuracy", sub_shape="label")
    labels = make_submission(r, None, list(range(len(probs))), probs, CLASSES)["label"]
    return labels.map(CLASSES.index).to_numpy()


def plotted_confusion(tmp_path, probs, **threshold) -> pd.DataFrame:
    """most_confused.csv, the confusion matrix's off-diagonal counts, as interpret writes it."""
    images = torch.zeros(len(Y), 3, 8, 8, dtype=torch.uint8)
    interpret(tmp_path, images, [f"{i}.jpg" for i in range(len(Y))], Y, probs, CLASSES,
              k=1, **threshold)  # fmt: skip
    return pd.read_csv(tmp_path / "most_confused.csv")


def confused(y, pred) -> dict:
    cm = confusion_matrix(y, pred, labels=[0, 1])
    return {(CLASSES[0], CLASSES[1]): cm[0, 1], (CLASSES[1], CLASSES[0]): cm[1, 0]}


def as_dict(df: pd.DataFrame) -> dict:
    found = {(a, p): n for a, p, n in df.itertuples(index=False)}
    return {pair: found.get(pair, 0) for pair in confused(Y, Y)}


def test_the_case_is_one_where_youden_and_argmax_disagree():
    cut = youden(Y, P1)
    assert cut < 0.5 and ((P1 >= cut) != (P1 >= 0.5)).sum() >= 5


def test_an_argmax_submission_is_what_the_confusion_matrix_counts(tmp_path):
    labels = submitted(PROBS)
    assert (decided(PROBS) == labels).all()
    assert as_dict(plotted_confusion(tmp_path, PROBS)) == confused(Y, labels)
    assert confused(Y, labels) != confused(Y, (P1 >= youden(Y, P1)).astype(int))


@pytest.mark.parametrize("threshold", [0.3, 0.45])
def test_a_tuned_threshold_is_what_the_confusion_matrix_counts(tmp_path, threshold):
    """kit ensemble --tune-threshold submits thresholded one-hot labels."""
    labels = submitted(thresholded(PROBS, threshold))
    assert (decided(PROBS, threshold) == labels).all()
    got = plotted_confusion(tmp_path, PROBS, threshold=threshold)
    assert as_dict(got) == confused(Y, labels)


def test_a_row_at_the_threshold_is_class_1_in_both():
    probs = np.array([[0.6, 0.4], [0.5, 0.5]])
    assert decided(probs, 0.4).tolist() == [1, 1] == submitted(thresholded(probs, 0.4)).tolist()
    assert decided(probs).tolist() == [0, 0] == submitted(probs).tolist()  # argmax: a tie is 0
