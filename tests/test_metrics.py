"""The metrics of one-hot, multi-label and top-k competitions on cases worked out by hand, and the
per-tag thresholds of a multi-label F-beta."""

import numpy as np
import pytest

from kit.evaluate.metrics import f1_samples, f2, map3, map5, mauc, score
from kit.evaluate.thresholds import decide, threshold_tuning, tune

# Three classes, four images. Column 0: its one positive (0.8) above every negative; column 1:
# the same (0.6); column 2: positives 0.5 and 0.05 against negatives 0.1 and 0.1, so 2 of 4
# pairs ordered: AUC 0.5. Mean (1 + 1 + 0.5) / 3.
Y3 = np.array([0, 1, 2, 2])
P3 = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.3, 0.5], [0.5, 0.45, 0.05]])


def test_mauc_is_the_mean_of_the_column_aucs():
    assert mauc(Y3, P3) == pytest.approx(2.5 / 3)
    multi_hot = np.eye(3)[Y3]
    assert mauc(multi_hot, P3) == pytest.approx(2.5 / 3)  # the same task written multi-hot
    # a tag no image has cannot be ranked: it is left out of the mean, not scored 0 or 1
    no_positive = np.c_[multi_hot, np.zeros(4)]
    assert mauc(no_positive, np.c_[P3, np.full(4, 0.3)]) == pytest.approx(2.5 / 3)


# Four tags. Image 0 has tags 0,1 and is given 0,2,3 (p >= 0.5): precision 1/3, recall 1/2,
# F2 = 5 PR / (4P + R) = 5/11, F1 = 2/5. Image 1 has tag 2; no p reaches 0.5, so its likeliest
# tag (2) is listed: F = 1.
Y4 = np.array([[1, 1, 0, 0], [0, 0, 1, 0]])
P4 = np.array([[0.9, 0.2, 0.6, 0.7], [0.1, 0.1, 0.3, 0.2]])


def test_f2_and_f1_samples_average_each_images_f_score():
    assert f2(Y4, P4) == pytest.approx((5 / 11 + 1) / 2)
    assert f1_samples(Y4, P4) == pytest.approx((2 / 5 + 1) / 2)
    assert f2(Y4, Y4.astype(float)) == 1.0


# Seven classes. Ranks of the right class: 1, 3, 4, and not among the 5 likeliest.
Y7 = np.array([2, 0, 6, 1])
P7 = np.array([
    [0.1, 0.2, 0.7, 0, 0, 0, 0],
    [0.2, 0.5, 0.25, 0.05, 0, 0, 0],
    [0.3, 0.25, 0.2, 0.1, 0.05, 0.05, 0.15],
    [0.3, 0.01, 0.2, 0.15, 0.14, 0.1, 0.1],
])  # fmt: skip


def test_map_at_k_scores_one_over_the_rank_within_k():
    assert map5(Y7, P7) == pytest.approx((1 + 1 / 3 + 1 / 4 + 0) / 4)
    assert map3(Y7, P7) == pytest.approx((1 + 1 / 3 + 0 + 0) / 4)
    assert score("map5", Y7, np.eye(7)[Y7]) == 1.0


def test_decide_keeps_every_tag_at_its_threshold_and_one_tag_per_image():
    probs = np.array([[0.4, 0.5], [0.1, 0.3], [0.35, 0.7]])
    # row 1 reaches neither threshold: the tag nearest its own (0.3 / 0.6 > 0.1 / 0.3) stays
    assert decide(probs, [0.3, 0.6]).tolist() == [[1, 0], [0, 1], [1, 1]]


def test_thresholds_tuned_out_of_sample_rescue_an_underconfident_model():
    """Sigmoids that rank the tags well but all sit below 0.5 (an early model): at 0.5 only the
    likeliest tag is listed; tuned thresholds, chosen on the other half, list the rest."""
    rng = np.random.default_rng(0)
    y = (rng.random((200, 5)) < 0.4).astype(np.float32)
    y[np.arange(200), rng.integers(0, 5, 200)] = 1
    probs = 0.15 + 0.25 * y + 0.05 * rng.random((200, 5))  # every p below 0.5
    found = threshold_tuning("f2", y, probs, np.arange(200) % 2)
    assert found["thresholded"] and found["f2_after_thresholds"] > 0.95
    assert found["f2_before_thresholds"] == pytest.approx(f2(y, probs))
    assert found["f2_before_thresholds"] < 0.7
    t = tune("f2", y, probs)
    assert found["thresholds"] == t.tolist() and all(0.15 < v < 0.45 for v in t)
