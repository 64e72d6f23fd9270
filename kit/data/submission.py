"""The submission contract: `sample_submission.csv` gives the test ids in their order and, by
its columns, the submission's shape (a label column, one probability column, or one per class;
a multi-label task's tags, or the k likeliest labels, space-separated in one column);
predictions are made into that shape and checked against the sample before a byte is written.
The sample is read as text, as Kaggle's scorer compares it: 000123 stays 000123."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from kit.data.readers.tables import read_sample_csv
from kit.errors import KitError
from kit.evaluate.metrics import ON_PROBABILITIES, TOP_K, predicted_tags
from kit.recipe import Recipe


def sample_path(folder: Path) -> Path | None:
    """sample_submission.csv, or the name another competition gave it: sampleSubmission.csv,
    sample_submission_v2.csv (its .zip is unpacked by `kit new`)."""
    for path in [folder / "sample_submission.csv", *sorted(folder.glob("*.csv"))]:
        if path.is_file() and re.sub(r"[_\- ]", "", path.stem.lower()).startswith("samplesub"):
            return path
    return None


def read_sample(folder: Path) -> pd.DataFrame | None:
    """sample_submission.csv, every cell as text (only an empty cell is missing)."""
    path = sample_path(folder)
    return read_sample_csv(path) if path else None


WHOLE = re.compile(r"-?(0|[1-9][0-9]*)")  # 7, -1; not 7.0, 07 or seven


def number(text) -> float | None:
    """`text` as a finite number, else None."""
    try:
        x = float(text)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def whole_numbers(values) -> bool:
    """Whether every value is written as a whole number: 7 or -1, not 7.0, 07 or seven."""
    return all(WHOLE.fullmatch(str(v)) for v in values)


def sample_classes(sample: pd.DataFrame | None, shape: str) -> list:
    """How sample_submission.csv writes classes: the values of its label column (label), its
    column names (probabilities); nothing for one probability column."""
    if sample is None or shape == "probability":
        return []
    return list(sample.columns[1:]) if shape == "probabilities" else sample.iloc[:, 1].tolist()


def as_sample_writes(labels: list, sample: pd.DataFrame | None, shape: str) -> list:
    """The training labels as text, numbers as the sample writes classes: where it writes whole
    numbers, the labels 1.0 and 01 are written 1."""
    labels = [str(v) for v in labels]
    shown, distinct = sample_classes(sample, shape), set(labels)
    whole = all(number(c) is not None and number(c).is_integer() for c in distinct)
    if not shown or not whole_numbers(shown) or not whole:
        return labels
    written = {c: str(int(number(c))) for c in distinct}
    return [written[c] for c in labels]


def submission_shape(r: Recipe, sample: pd.DataFrame | None, classes: list | None) -> str:
    """label | probability | probabilities | tags | top_k, from the recipe, else from
    sample_submission.csv's columns and the metric; a KitError where the sample, the metric and
    the training `classes` (if known) disagree."""
    values = list(sample.columns[1:]) if sample is not None else []
    shape = r.sub_shape
    if shape == "auto":
        many = classes is not None and len(classes) > 2
        if len(values) > 1 or (not values and r.metric in ON_PROBABILITIES and many):
            shape = "probabilities"
        elif r.multi_label:
            shape = "tags"
        elif r.metric in TOP_K:
            shape = "top_k"
        else:
            shape = "probability" if r.metric in ON_PROBABILITIES else "label"
    check_kind(r, shape)
    if classes is None:
        return shape
    if r.metric in TOP_K and len(classes) <= 2:
        named = ", ".join(map(str, classes))
        raise KitError(f"--metric {r.metric} scores the {TOP_K[r.metric]} likeliest of many "
                       f"classes; this task has {len(classes)} ({named}): use auc, logloss or "
                       "accuracy")  # fmt: skip
    if shape == "top_k" and any(" " in str(c) for c in classes):
        spaced = next(str(c) for c in classes if " " in str(c))
        raise KitError(f"class {spaced!r} has a space, and a top_k submission separates its "
                       "labels by spaces; use --sub-shape label or probabilities")  # fmt: skip
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
    if shape != "probabilities" and sample is not None and len(values) != 1:
        raise KitError(f"sample_submission.csv has {len(values)} value columns; a {shape} "
                       "submission has one (--sub-shape probabilities: one per class)")  # fmt: skip
    shown = sample_classes(sample, shape)
    if shape == "label" and shown and whole_numbers(shown) and not whole_numbers(classes):
        odd = next(c for c in classes if not WHOLE.fullmatch(str(c)))
        raise KitError(f"sample_submission.csv writes {values[0]} as whole numbers (e.g. "
                       f"{shown[0]}) but the training labels include {str(odd)!r}; check the "
                       "labels column (--label-col)")  # fmt: skip
    return shape


def check_kind(r: Recipe, shape: str) -> None:
    """A multi-label task submits tags or probabilities; tags need a multi-label task."""
    if r.multi_label and shape not in ("tags", "probabilities"):
        raise KitError(f"a multi-label task submits tags or one probability column per tag, not "
                       f"{shape}; use --sub-shape tags or probabilities")  # fmt: skip
    if shape == "tags" and not r.multi_label:
        raise KitError("--sub-shape tags lists several labels per image: add --multi-label, or "
                       "use --sub-shape label")  # fmt: skip


def labels_per_row(r: Recipe, shape: str, classes: list) -> int:
    """How many labels a row of a top_k submission holds: k, or every class when there are
    fewer."""
    return min(r.top_k, len(classes)) if shape == "top_k" else 1


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
    elif shape in ("tags", "top_k"):
        col = sample.columns[1] if sample is not None else r.label_col
        if shape == "tags":
            picked = [np.flatnonzero(row) for row in predicted_tags(probs)]
        else:
            k = labels_per_row(r, shape, classes)
            picked = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        df[col] = [" ".join(str(classes[j]) for j in row) for row in picked]
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
    df: pd.DataFrame,
    sample: pd.DataFrame | None,
    ids: list,
    labels: list | None = None,
    shape: str = "label",
    k: int = 1,
) -> None:
    """Raise KitError unless `df` has the sample's columns, ids, order and row count, and
    values that are known `labels` (label submissions, whole numbers where the sample writes
    whole numbers; `shape` tags: one or more of them per row, top_k: `k` of them,
    space-separated and none twice) or probabilities in [0, 1]; ids, labels and numbers
    compared as text."""
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
        if labels is not None and shape in ("tags", "top_k"):
            check_label_lists(col, values, labels, shape, k)
            continue
        if labels is None:
            p = pd.to_numeric(values, errors="coerce")
            if whole_numbers(values) or p.isna().any() or not p.between(0, 1).all():
                raise KitError(f"submission column {col!r} must hold probabilities in [0, 1]")
            continue
        if sample is not None and whole_numbers(sample[col]) and not whole_numbers(values):
            raise KitError(f"submission column {col!r} must hold integers, as the sample does")
        names = {str(c) for c in labels}
        bad = sorted({v for v in values if str(v) not in names}, key=str)
        if bad:
            raise KitError(f"submission column {col!r} has values {bad[:5]} outside the classes")


def check_label_lists(col, values: pd.Series, labels: list, shape: str, k: int) -> None:
    """Each value: space-separated known labels, none twice; `k` of them (top_k), or at least
    one (tags)."""
    known = {str(c) for c in labels}
    for row, value in enumerate(values.astype(str)):
        got = value.split(" ")
        unknown = [t for t in got if t not in known]
        if unknown:
            raise KitError(f"submission column {col!r} has values {unknown[:5]} outside the "
                           f"classes (row {row + 1})")  # fmt: skip
        if len(set(got)) != len(got):
            raise KitError(f"submission column {col!r} repeats a label on row {row + 1}")
        if shape == "top_k" and len(got) != k:
            raise KitError(f"submission column {col!r} holds {len(got)} labels on row {row + 1}; "
                           f"a top-{k} submission holds {k}, best first")  # fmt: skip


def checked_submission(r: Recipe, sample, ids: list, probs: np.ndarray, classes: list):
    """The submission made from `probs` and checked against the sample: ready to be written."""
    sub = make_submission(r, sample, ids, probs, classes)
    shape = submission_shape(r, sample, classes)
    labels = classes if shape in ("label", "tags", "top_k") else None
    check_submission(sub, sample, ids, labels, shape, labels_per_row(r, shape, classes))
    return sub
