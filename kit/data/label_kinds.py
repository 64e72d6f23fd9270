"""The kinds of training label a labels CSV holds, found by `kit new` and read by `kit run`
with the same parsing: one class per row in one column; one 0/1 column per class (Plant
Pathology), one or several 1s per row; space-separated tags (Planet); and, from the sample,
the k likeliest labels per image (Humpback Whale)."""

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from kit.data.readers.files import natural_key
from kit.data.readers.tables import column
from kit.data.submission import WHOLE, number
from kit.errors import KitError
from kit.recipe import Recipe

DECIMAL = re.compile(r"-?[0-9]+\.0+")  # 1.0, a whole number written as a decimal


def class_order(labels) -> list:
    """The distinct labels in order: as numbers when every one is a number (grade 10 after 9,
    as QWK needs them), else in natural order (img10 after img9)."""
    distinct = set(labels)
    if all(number(c) is not None for c in distinct):
        return sorted(distinct, key=lambda c: (number(c), c))
    return sorted(distinct, key=natural_key)


def as_whole(labels: list) -> list:
    """Labels written 1.0 and 2.0 (a column a tool saved as floats) as 1 and 2, where every
    label is a whole number: the classes the sample, the solution and --positive name."""
    distinct = {str(v) for v in labels}
    if not any(DECIMAL.fullmatch(v) for v in distinct) or not all(
        WHOLE.fullmatch(v) or DECIMAL.fullmatch(v) for v in distinct
    ):
        return labels
    return [str(int(str(v).split(".")[0])) if DECIMAL.fullmatch(str(v)) else v for v in labels]


def not_zero_one(values: pd.Series) -> pd.Series:
    """Where a 0/1 column holds something else: 1, 1.0 and "1" are all 1."""
    return ~pd.to_numeric(values, errors="coerce").isin([0, 1])


def ones(df: pd.DataFrame, cols: list) -> np.ndarray:
    """The 0/1 columns `cols` as an int matrix, a row per image."""
    return df[cols].apply(pd.to_numeric).to_numpy().astype(int)


def one_hot_columns(df: pd.DataFrame, others: list, sample) -> list | None:
    """The labels as one 0/1 column per class (Plant Pathology: healthy, multiple_diseases, rust,
    scab): sample_submission.csv's value columns, when it has two or more and each is a column
    of 0s and 1s here."""
    if sample is None or len(sample.columns) < 3:
        return None
    cols = [c for c in sample.columns[1:] if c in others]
    if len(cols) < len(sample.columns) - 1:
        return None
    return cols if not any(not_zero_one(df[c]).any() for c in cols) else None


def tag_lists(values: list) -> list | None:
    """Each row's space-separated tags (Planet: `haze primary water`) when the column holds tags:
    rows of several words that recombine a smaller vocabulary. Class names with spaces (`st.
    bernard`) are not tags: their words do not recombine."""
    rows = [str(v).split() for v in values]
    if not any(len(r) > 1 for r in rows):
        return None
    combos = {frozenset(r) for r in rows}
    words = Counter(w for c in combos for w in c)  # in how many combinations each word is
    recombine = sum(n >= 2 for n in words.values()) >= 2 / 3 * len(words)
    return rows if len(words) < len(combos) or recombine else None


def label_kind(df: pd.DataFrame, others: list, label, sample) -> dict:
    """label_col as found (one column, or several 0/1 columns comma-separated), and
    multi_label when rows hold several labels, as {field: (value, comment)}."""
    flags = one_hot_columns(df, others, sample)
    if flags:
        col = (",".join(map(str, flags)), "one 0/1 column per class")
        several = int((ones(df, flags).sum(1) > 1).sum())
        if several:
            return dict(label_col=col, multi_label=(True, f"{several:,} rows hold several 1s"))
        return dict(label_col=col)
    tags = tag_lists(df[label].tolist())
    if tags:
        n = len({t for r in tags for t in r})
        combos = len({frozenset(r) for r in tags})
        note = f"space-separated tags: {n} tags in {combos} combinations"
        return dict(label_col=(label, None), multi_label=(True, note))
    return dict(label_col=(label, None))


def csv_labels(df: pd.DataFrame, r: Recipe, path: Path) -> list:
    """Each row's class; with `multi_label`, its list of tags (space-separated in one column).
    Several comma-separated label columns are one 0/1 column per class."""
    cols = [c.strip() for c in r.label_col.split(",")]
    if len(cols) > 1:
        return one_hot_labels(df, cols, r.multi_label, path)
    values = column(df, cols[0], path, "label-col").tolist()
    if not r.multi_label:
        return as_whole(values)
    tags = [str(v).split() for v in values]
    empty = next((i for i, t in enumerate(tags) if not t), None)
    if empty is not None:
        raise KitError(f"{path.name} has no tags on row {empty + 2}; every image needs at least "
                       "one tag")  # fmt: skip
    return tags


def one_hot_labels(df: pd.DataFrame, cols: list, multi_label: bool, path: Path) -> list:
    """One 0/1 column per class: each row's class (its one 1), or with `multi_label` its list of
    classes; a KitError for a value other than 0/1, and (single-label) a row of no or several 1s."""
    for c in cols:
        values = column(df, c, path, "label-col")
        bad = not_zero_one(values)
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise KitError(f"{path.name} column {c} holds {values.iloc[row]!r} on row {row + 2}; "
                           "one-hot label columns hold 0 or 1")  # fmt: skip
    flags = ones(df, cols)
    if multi_label:
        return [[cols[j] for j in np.flatnonzero(row)] for row in flags]
    count = flags.sum(1)
    if (count != 1).any():
        row = int((count != 1).argmax())
        if count[row] == 0:
            raise KitError(f"{path.name} row {row + 2} has no class: each of {', '.join(cols)} is "
                           "0, and a one-hot row holds one 1")  # fmt: skip
        named = ", ".join(c for c, v in zip(cols, flags[row]) if v)
        raise KitError(f"{path.name} row {row + 2} has {count[row]} classes ({named}): the labels "
                       "are multi-label; set multi_label=True in the recipe (or pass "
                       "--multi-label)")  # fmt: skip
    return [cols[j] for j in flags.argmax(1)]


def ranked_labels(sample, multi_label: bool, classes=()) -> int:
    """k, when sample_submission.csv's one value column lists k > 1 labels per row for a task of
    one label per image (Humpback Whale: `new_whale w_1287fbc w_98baff9 ...`): the k likeliest
    labels are submitted, best first. 0 otherwise, and where the value is one of the training
    `classes` (`crème brûlée`: one class with a space)."""
    if multi_label or sample is None or len(sample.columns) != 2 or not len(sample):
        return 0
    if str(sample.iloc[0, 1]) in {str(c) for c in classes}:
        return 0
    k = len(str(sample.iloc[0, 1]).split())
    return k if k > 1 else 0
