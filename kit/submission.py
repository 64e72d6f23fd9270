"""Submission files: checked against sample_submission.csv before a byte is written."""

import os
import tempfile
from pathlib import Path

import pandas as pd

from kit.errors import KitError


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


def write_new(text: str, dest: Path) -> Path:
    """Write `text` to `dest` atomically; refuse to replace an existing file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.link(tmp, dest)  # fails if dest exists: a submission is never overwritten
    except FileExistsError:
        raise KitError(f"{dest} already exists; nothing was overwritten") from None
    finally:
        os.unlink(tmp)
    return dest


def sample_path(folder: Path) -> Path | None:
    """sample_submission.csv, or the name an older competition gave it (sampleSubmission.csv)."""
    for path in [folder / "sample_submission.csv", *sorted(folder.glob("*.csv"))]:
        if path.is_file() and path.stem.lower().replace("_", "") == "samplesubmission":
            return path
    return None


def read_sample(folder: Path) -> pd.DataFrame | None:
    path = sample_path(folder)
    return pd.read_csv(path) if path else None
