"""The pixel layout (Digit Recognizer, Kannada-MNIST): train.csv holds a label and a square
number of pixel columns per image, test.csv (an id and) the test images' pixels."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from kit.data.label_kinds import as_whole
from kit.data.readers.contents import Contents, labelled_first, left_out
from kit.data.readers.tables import PIXEL, column, has_rows, read_csv
from kit.errors import KitError
from kit.recipe import Recipe

NAME = "pixel CSVs (train.csv: label,pixel0,...)"
MIN_PIXELS = 64  # an 8x8 image; fewer pixel columns are not images
CHUNK_BYTES = 64 * 2**20  # float32 images resized at once: 334 at 224 px


def square_side(n: int) -> int | None:
    """The side of a square image of `n` pixels, if `n` is a square."""
    side = math.isqrt(n)
    return side if side * side == n else None


def pixel_columns(df: pd.DataFrame) -> list | None:
    """The pixel columns, when there are enough of them to make a square image."""
    cols = [c for c in df.columns if PIXEL.fullmatch(str(c))]
    return cols if len(cols) >= MIN_PIXELS and square_side(len(cols)) else None


def detect(seen: Contents) -> dict | None:
    """A CSV of a label and a square number of pixel columns, and one of test pixels."""
    found = {p: cols for p, df in seen.csvs.items() if (cols := pixel_columns(df))}
    train = [p for p in labelled_first(seen)
             if p in found and len(seen.csvs[p].columns) > len(found[p])]  # fmt: skip
    test = [p for p in found if "test" in p.stem.lower()]
    if not train or not test:
        return None
    path, df, tdf = train[0], seen.csvs[train[0]], seen.csvs[test[0]]
    others = [c for c in df.columns if c not in found[path]]
    label = "label" if "label" in others else others[0]
    ids = [c for c in tdf.columns if c not in found[test[0]]]
    n = len(found[path])
    side = square_side(n)
    for p, frame in ((path, df), (test[0], tdf)):  # checked as kit run reads them
        pixels(frame[found[p]], p, side)
    sample = seen.sample
    id_col = ids[0] if ids else (sample.columns[0] if sample is not None else "ImageId")
    return dict(
        layout=(
            "pixels",
            f"{path.name}: {label} and {n} pixels; {len(df):,} images {side}x{side} grey",
        ),  # fmt: skip
        labels_csv=(path.name, left_out(seen, path, label, train)),
        label_col=(label, None),
        test_csv=(test[0].name, f"{len(tdf):,} images"),
        id_col=(id_col, f"test ids: {'the ' + ids[0] + ' column' if ids else 'counted from 1'}"),
        _labels=as_whole(column(df, label, path, "label-col").tolist()),
        _size=(side, True),
    )


def pixels(df: pd.DataFrame, path: Path, size: int) -> torch.Tensor:
    """The pixel columns as a uint8 (N, 1, size, size) tensor, checked."""
    n = df.shape[1]
    side = square_side(n)
    if side is None:
        raise KitError(f"{path.name} has {n} pixel columns, not a square number like 784 (28x28)")
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        col = bad[0]
        row = pd.to_numeric(df[col], errors="coerce").isna().to_numpy().argmax()
        raise KitError(f"{path.name} column {col} has a non-numeric value {df[col].iloc[row]!r} "
                       f"on row {row + 2}; pixels must be numbers 0-255")  # fmt: skip
    values = df.to_numpy()
    if values.dtype.kind == "f" and np.isnan(values).any():
        row, col = np.argwhere(np.isnan(values))[0]
        cut = ": the file may be cut short, download it again" if row == len(df) - 1 else ""
        raise KitError(f"{path.name} is missing a value on row {row + 2} ({df.columns[col]}); "
                       f"every pixel needs a number 0-255{cut}")  # fmt: skip
    if values.min() < 0 or values.max() > 255:
        raise KitError(f"{path.name} has pixel values outside 0-255")
    x = torch.from_numpy(values.astype(np.uint8)).view(-1, 1, side, side)
    return x if side == size else resized(x, size)


def resized(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images resized a chunk at a time into a uint8 result: only one chunk is ever in
    float32 (Digit Recognizer's 42,000 at 224 px would be 8.4 GB at once)."""
    out = torch.empty((len(x), 1, size, size), dtype=torch.uint8)
    step = max(1, CHUNK_BYTES // (size * size * 4))
    for i in range(0, len(x), step):
        part = F.interpolate(x[i : i + step].float(), size=(size, size), mode="bilinear",
                             antialias=True)  # fmt: skip
        out[i : i + step] = part.round_().clamp_(0, 255)  # in place: no second float copy
    return out


def read(folder: Path, r: Recipe, sample: pd.DataFrame | None) -> dict:
    """A training CSV of label and pixels, a test CSV of (id and) pixels."""
    train_path, test_path = folder / r.labels_csv, folder / r.test_csv
    train = has_rows(
        read_csv(train_path, "training pixels", (r.label_col, r.group_col)), train_path
    )
    test = read_csv(test_path, "test pixels", (r.id_col,))
    labels = column(train, r.label_col, train_path, "label-col")
    groups = column(train, r.group_col, train_path, "group-col").tolist() if r.group_col else None
    train = train.drop(columns=[r.label_col, *([r.group_col] if r.group_col else [])])
    train = train.drop(columns=[r.id_col], errors="ignore")
    if len(test) == 0:
        raise KitError(f"{test_path.name} has no rows; there is nothing to predict")
    if r.id_col in test.columns:
        ids = test.pop(r.id_col).tolist()
    elif sample is not None and len(sample) == len(test):
        ids = sample.iloc[:, 0].tolist()
    else:
        ids = [str(i) for i in range(1, len(test) + 1)]  # Kaggle counts rows from 1 (ImageId)
    if train.shape[1] != test.shape[1]:
        raise KitError(f"{train_path.name} has {train.shape[1]} pixel columns but "
                       f"{test_path.name} has {test.shape[1]}; both must hold the same image "
                       "size")  # fmt: skip
    x = pixels(train, train_path, r.size)
    names = [f"{train_path.stem} row {i + 1}" for i in range(len(x))]  # "train row 1"
    return dict(x=x, labels=as_whole(labels.tolist()), names=names,
                test_x=pixels(test, test_path, r.size), test_ids=ids, groups=groups,
                skipped=0)  # fmt: skip
