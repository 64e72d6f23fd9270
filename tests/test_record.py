"""metrics.json through its one owner (kit/runs/record.py): a run's record as written before
the typed record existed reads back to the same object, and a record decides a run's test
probabilities as training decided them."""

import numpy as np
import pytest

from kit.evaluate.calibration import calibrate
from kit.files import read_json, write_json
from kit.runs.record import Record, read_record, score_key, write_record

WRITTEN = {  # a k-fold log-loss run's metrics.json, keys as pipeline.py wrote them
    "valid_logloss": 0.41,
    "valid_tta_logloss": 0.39,
    "folds_tta_logloss": [0.38, 0.40],
    "folds_tta_logloss_std": 0.01,
    "temperature": 1.3,
    "logloss_before_calibration": 0.39,
    "calibrated": True,
    "submitted": "tta",
    "lr_rule": "valley",
    "folds": 2,
    "processes": 1,
    "epochs": 6,
    "seconds": 12.5,
    "weights": None,
    "data": "/data/dogs",
    "classes": ["cat", "dog"],
}


def test_a_record_reads_and_writes_the_flat_file_unchanged(tmp_path):
    write_json(tmp_path / "metrics.json", WRITTEN)
    record = read_record(tmp_path)
    assert record.tta and not record.ensemble and record.folds == 2
    assert record.submitted_score("logloss") == 0.39 == record.score("logloss", tta=True)
    assert record.score("logloss", "folds", tta=True) == [0.38, 0.40]
    assert record.score("auc") is None and score_key("auc", "test") == "test_auc"
    (tmp_path / "again").mkdir()
    assert write_record(tmp_path / "again", record) == WRITTEN
    assert read_json(tmp_path / "again" / "metrics.json") == WRITTEN


def test_a_record_decides_test_probabilities_as_the_run_did():
    probs = np.array([[0.9, 0.1], [0.3, 0.7]])
    calibrated = Record.from_json(WRITTEN).decided(probs)
    assert calibrated == pytest.approx(calibrate(probs, 1.3))
    assert not np.allclose(calibrated, probs)
    tagged = np.array([[0.9, 0.1], [0.6, 0.7]])
    tags = Record(["a", "b"], thresholded=True, thresholds=[0.5, 0.8]).decided(tagged)
    assert tags.tolist() == [[1, 0], [1, 0]]  # b's 0.7 is under its tuned 0.8
    assert Record(["a", "b"]).decided(probs) is probs  # neither: the probabilities themselves
