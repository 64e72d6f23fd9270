"""The submission contract: `sample_submission.csv` gives the test ids in their order and, by
its columns, the submission's shape (a label column, one probability column, or one per class);
predictions are made into that shape and checked against the sample before a byte is written."""

from pathlib import Path

import numpy as np
import pandas as pd

from kit.errors import KitError
from kit.evaluate.metrics import ON_PROBABILITIES
from kit.recipe import Recipe


def sample_path(folder: Path) -> Path | None:
    """sample_submission.csv, or the name an older competition gave it (sampleSubmission.csv)."""
    for path in [folder / "sample_submission.csv", *sorted(folder.glob("*.csv"))]:
        if path.is_file() and path.stem.lower().replace("_", "") == "samplesubmission":
            return path
    return None


def read_sample(folder: Path) -> pd.DataFrame | None:
    path = sample_path(folder)
    return pd.read_csv(path) if path else None


def submission_shape(r: Recipe, sample: pd.DataFrame | None, classes: list | None) -> str:
    """label | probability | probabilities, from the recipe, else from sample_submission.csv's
    columns and the metric; a KitError where the sample and the training `classes` (if known)
    disagree."""
    values = list(sample.columns[1:]) if sample is not None else []
    shape = r.sub_shape
    if shape == "auto":
        many = classes is not None and len(classes) > 2
        if len(values) > 1 or (not values and r.metric in ON_PROBABILITIES and many):
            shape = "probabilities"
        else:
            shape = "probability" if r.metric in ON_PROBABILITIES else "label"
    if classes is None:
        return shape
    if shape == "probability" and len(classes) != 2:
        raise KitError(f"one probability column needs two classes; the training labels have "
                       f"{len(classes)}: use --sub-shape probabilities or label")  # fmt: skip
    if shape == "probabilities" and sample is not None:
        names = {str(c) for c in classes}
        extra = [c for c in values if str(c) not in names]
        if extra:
            raise KitError(f"sample_submission.csv has a column {extra[0]!r} that no training "
                           f"label names; check the labels column (--label-col)")  # fmt: skip
        lacking = sorted(names - {str(c) for c in values})
        if lacking:
            raise KitError(f"training label {lacking[0]!r} has no column in "
                           "sample_submission.csv; check --label-col")  # fmt: skip
    if shape in ("label", "probability") and sample is not None and len(values) != 1:
        raise KitError(f"sample_submission.csv has {len(values)} value columns; a {shape} "
                       "submission has one (--sub-shape probabilities: one per class)")  # fmt: skip
    return shape


def positive_class(r: Recipe, classes: list) -> int:
    """The class whose probability a one-column submission holds: `r.positive`, else the last
    (1 of 0/1, `dog` of cat/dog)."""
    if not r.positive:
        return len(classes) - 1
    names = [str(c) for c in classes]
    if r.positive not in names:
        raise KitError(f"--positive {r.positive!r} is not a class; the classes are "
                       f"{', '.join(names)}")  # fmt: skip
    return names.index(r.positive)


def make_submission(r: Recipe, sample, ids: list, probs: np.ndarray, classes: list) -> pd.DataFrame:
    """Predictions in the shape sample_submission.csv asks for, its column names as written."""
    shape = submission_shape(r, sample, classes)
    id_col = sample.columns[0] if sample is not None else r.id_col
    df = pd.DataFrame({id_col: ids})
    if shape == "label":
        col = sample.columns[1] if sample is not None else r.label_col
        df[col] = [classes[i] for i in probs.argmax(1)]
    elif shape == "probability":
        col = sample.columns[1] if sample is not None else r.label_col
        df[col] = probs[:, positive_class(r, classes)].astype(np.float64)
    else:
        cols = list(sample.columns[1:]) if sample is not None else [str(c) for c in classes]
        index = {str(c): i for i, c in enumerate(classes)}
        for col in cols:
            df[col] = probs[:, index[str(col)]].astype(np.float64)
    return df


def check_submission(
    df: pd.DataFrame, sample: pd.DataFrame | None, ids: list, labels: list | None = None
) -> None:
    """Raise KitError unless `df` has the sample's columns, ids, order and row count, and
    values that are known `labels` (label submissions) or probabilities in [0, 1]."""
    expected_cols = list(sample.columns) if sample is not None else list(df.columns)
    if list(df.columns) != expected_cols:
        raise KitError(f"submission columns {list(df.columns)} differ from {expected_cols}")
    expected_ids = (
        sample.iloc[:, 0].astype(str).tolist() if sample is not None else list(map(str, ids))
    )
    if len(df) != len(expected_ids):
        raise KitError(
            f"submission has {len(df)} rows; sample_submission.csv has {len(expected_ids)}"
        )
    got_ids = df.iloc[:, 0].astype(str).tolist()
    if got_ids != expected_ids:
        first = next(i for i, (a, b) in enumerate(zip(got_ids, expected_ids)) if a != b)
        raise KitError(
            f"submission id {got_ids[first]!r} at row {first + 1} should be "
            f"{expected_ids[first]!r}: ids must match sample_submission.csv in order"
        )
    for col in df.columns[1:]:
        values = df[col]
        if values.isna().any():
            raise KitError(f"submission column {col!r} has missing values")
        if labels is not None:
            bad = sorted(set(values) - set(labels), key=str)
            if bad:
                raise KitError(
                    f"submission column {col!r} has values {bad[:5]} outside the classes"
                )
        elif not pd.api.types.is_float_dtype(values) or not values.between(0, 1).all():
            raise KitError(f"submission column {col!r} must hold probabilities in [0, 1]")
        if (
            sample is not None
            and labels is not None
            and pd.api.types.is_integer_dtype(sample[col])
            and not pd.api.types.is_integer_dtype(values)
        ):
            raise KitError(f"submission column {col!r} must hold integers, as the sample does")


def checked_submission(r: Recipe, sample, ids: list, probs: np.ndarray, classes: list):
    """The submission made from `probs` and checked against the sample: ready to be written."""
    sub = make_submission(r, sample, ids, probs, classes)
    labels = classes if submission_shape(r, sample, classes) == "label" else None
    check_submission(sub, sample, ids, labels)
    return sub
