"""The submission writer: checked against sample_submission.csv, atomic, never overwrites."""

import pandas as pd
import pytest

from kit.data.submission import check_submission
from kit.errors import KitError
from kit.files import write_new

SAMPLE = pd.DataFrame({"ImageId": [1, 2, 3], "Label": [0, 0, 0]})


def sub(ids=(1, 2, 3), labels=(7, 1, 0), cols=("ImageId", "Label")):
    return pd.DataFrame(dict(zip(cols, [list(ids), list(labels)])))


def test_a_matching_submission_passes():
    check_submission(sub(), SAMPLE, [1, 2, 3], labels=list(range(10)))


@pytest.mark.parametrize(
    "df, message",
    [
        (sub(cols=("ImageId", "label")), "columns ['ImageId', 'label'] differ"),
        (sub(ids=(1, 2), labels=(0, 1)), "has 2 rows; sample_submission.csv has 3"),
        (sub(ids=(1, 3, 2)), "id '3' at row 2 should be '2'"),
        (sub(labels=(0, 1, 12)), "values [12] outside the classes"),
        (sub(labels=(0, 1, None)), "has missing values"),
        (sub(labels=(0.0, 1.0, 2.0)), "must hold integers"),
    ],
)
def test_mismatches_are_refused(df, message):
    with pytest.raises(KitError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_submission(df, SAMPLE, [1, 2, 3], labels=list(range(10)))


def test_probabilities_must_lie_in_0_1():
    sample = pd.DataFrame({"name": [1, 2], "invasive": [0.5, 0.5]})
    check_submission(pd.DataFrame({"name": [1, 2], "invasive": [0.1, 0.9]}), sample, [1, 2])
    with pytest.raises(KitError, match="probabilities in \\[0, 1\\]"):
        check_submission(pd.DataFrame({"name": [1, 2], "invasive": [0.1, 1.2]}), sample, [1, 2])


def test_without_a_sample_ids_come_from_the_test_items():
    check_submission(sub(), None, [1, 2, 3], labels=list(range(10)))
    with pytest.raises(KitError, match="id '3' at row 3 should be '4'"):
        check_submission(sub(), None, [1, 2, 4], labels=list(range(10)))


def test_write_new_never_overwrites_and_leaves_no_temp_file(tmp_path):
    dest = tmp_path / "sub" / "a.csv"
    write_new("ImageId,Label\n1,7\n", dest)
    with pytest.raises(KitError, match="already exists; nothing was overwritten"):
        write_new("ImageId,Label\n1,0\n", dest)
    assert dest.read_text() == "ImageId,Label\n1,7\n"
    assert [p.name for p in dest.parent.iterdir()] == ["a.csv"]
