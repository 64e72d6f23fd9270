"""Kaggle's image-classification layouts read into memory, checked.

A recipe names its layout and the columns and folders it found (`kit new` writes them):

- `csv`: images in a folder and a CSV of id and label (Aerial Cactus, Cassava, Dog Breed...);
  the label may be one 0/1 column per class (Plant Pathology), or with `multi_label`
  space-separated tags (Planet);
- `folders`: one training folder per class (Plant Seedlings);
- `filenames`: the label is the file name up to its first dot, `cat.0.jpg` (Dogs vs Cats);
- `pixels`: a CSV of pixel values per image (Digit Recognizer, Kannada-MNIST).

`sample_submission.csv` is the contract (kit/data/submission.py): its ids, in its order, are
the test items, and its columns must agree with the training labels.
"""

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from kit.data.images import IMAGE_EXTS, cache_dir, load_photos
from kit.data.submission import as_sample_writes, number, read_sample, submission_shape
from kit.errors import KitError
from kit.evaluate.predictions import multi_hot
from kit.recipe import Recipe


@dataclass
class Data:
    """A competition folder read into memory: what every recipe's `load` returns."""

    x: torch.Tensor  # uint8 (N, C, H, W) training images (photos: mapped from the cache)
    y: torch.Tensor  # int64 (N,) class indices; multi-label: float32 (N, classes) multi-hot
    classes: list  # class labels, text, as the submission writes them; numbers in numeric order
    names: list  # how a training item is named in plots and CSVs (file name, csv row)
    test_x: torch.Tensor  # uint8 test images, in submission order
    test_ids: list  # submission ids, text as the files write them (000123 stays 000123), in order
    test_y: torch.Tensor | None = None  # known test labels (only the bundled samples have them)
    skipped: int = 0  # unreadable training items left out
    groups: list | None = None  # per training item, what groups it (same patient, same
    # scene): a group is never split between training and validation


def natural_key(name: str) -> list:
    """'img10' after 'img9': digit runs compare as numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


def image_files(folder: Path) -> list[Path]:
    """The images directly inside `folder`, in natural order."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))


def images_in(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise KitError(f"the {what} folder {folder} is missing; check --{what}-dir, or unpack "
                       "the competition's archives there")  # fmt: skip
    files = image_files(folder)
    if not files:
        raise KitError(f"the {what} folder {folder} has no images "
                       f"({', '.join(sorted(IMAGE_EXTS))})")  # fmt: skip
    return files


def read_table(path: Path, what: str, text=(), **kw) -> pd.DataFrame:
    """A CSV whose `text` columns (ids, labels, groups) are read as written: 000123 stays
    000123, and only an empty cell is missing (NA and None are names)."""
    if not path.is_file():
        raise KitError(f"{path} is missing; the folder should hold the competition's {what}")
    try:
        return pd.read_csv(path, low_memory=False, dtype={c: str for c in text if c},
                           keep_default_na=False, na_values=[""], **kw)  # fmt: skip
    except pd.errors.EmptyDataError:
        raise KitError(f"{path} is empty; download it again from Kaggle") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise KitError(f"{path} is not a readable CSV ({e})") from None


def column(df: pd.DataFrame, col: str, path: Path, flag: str) -> pd.Series:
    if col not in df.columns:
        have = ", ".join(map(str, df.columns[:6]))
        raise KitError(f"{path.name} has no {col!r} column (it has {have}); name the right one "
                       f"with --{flag}")  # fmt: skip
    values = df[col]
    if values.isna().any():
        row = int(values.isna().to_numpy().argmax())
        raise KitError(f"{path.name} has no {col} on row {row + 2}")
    return values


def file_for(item, ext: str, by_name: dict) -> Path | None:
    """The image that `item` (an id, with or without its extension) names among `by_name`."""
    item = str(item)
    for name in (item, item + ext):
        if name in by_name:
            return by_name[name]
    return None


def match_files(folder: Path, items: list, ext: str, csv: str, what: str) -> list[Path]:
    """The image file for every id; a KitError naming the first id without one."""
    files = images_in(folder, what)
    by_name = {f.name: f for f in files} | {f.stem: f for f in files if not ext}
    found = [file_for(i, ext, by_name) for i in items]
    missing = [str(i) + ext for i, f in zip(items, found) if f is None]
    if missing:
        raise KitError(f"{csv} names {len(missing)} images missing from {folder.name}/, "
                       f"e.g. {missing[0]}")  # fmt: skip
    return found


def csv_items(folder: Path, r: Recipe) -> tuple[list[Path], list, list | None]:
    """Images and labels from a CSV of id and label: (files, labels, groups)."""
    path = folder / r.labels_csv
    text = (r.id_col, r.label_col, r.group_col)
    df = read_table(path, f"training labels ({r.id_col},{r.label_col})", text)
    ids = column(df, r.id_col, path, "id-col")
    labels = csv_labels(df, r, path)
    dup = ids[ids.duplicated()]
    if len(dup):
        raise KitError(f"{path.name} names image {dup.iloc[0]} more than once")
    files = match_files(folder / r.train_dir, ids.tolist(), r.ext, path.name, "train")
    groups = column(df, r.group_col, path, "group-col").tolist() if r.group_col else None
    return files, labels, groups


def csv_labels(df: pd.DataFrame, r: Recipe, path: Path) -> list:
    """Each row's class; with `multi_label`, its list of tags (space-separated in one column).
    Several comma-separated label columns are one 0/1 column per class (kit/data/layouts.py)."""
    cols = [c.strip() for c in r.label_col.split(",")]
    if len(cols) > 1:
        return one_hot_labels(df, cols, r.multi_label, path)
    values = column(df, cols[0], path, "label-col").tolist()
    if not r.multi_label:
        return values
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
        bad = ~pd.to_numeric(values, errors="coerce").isin([0, 1])  # 1, 1.0 or "1"
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise KitError(f"{path.name} column {c} holds {values.iloc[row]!r} on row {row + 2}; "
                           "one-hot label columns hold 0 or 1")  # fmt: skip
    ones = df[cols].apply(pd.to_numeric).to_numpy().astype(int)
    if multi_label:
        return [[cols[j] for j in np.flatnonzero(row)] for row in ones]
    count = ones.sum(1)
    if (count != 1).any():
        row = int((count != 1).argmax())
        if count[row] == 0:
            raise KitError(f"{path.name} row {row + 2} has no class: each of {', '.join(cols)} is "
                           "0, and a one-hot row holds one 1")  # fmt: skip
        named = ", ".join(c for c, v in zip(cols, ones[row]) if v)
        raise KitError(f"{path.name} row {row + 2} has {count[row]} classes ({named}): the labels "
                       "are multi-label; set multi_label=True in the recipe (or pass "
                       "--multi-label)")  # fmt: skip
    return [cols[j] for j in ones.argmax(1)]


def folder_items(folder: Path, r: Recipe) -> tuple[list[Path], list, None]:
    """One subfolder of the training folder per class."""
    root = folder / r.train_dir
    if not root.is_dir():
        raise KitError(f"the train folder {root} is missing; it should hold one folder per class")
    classes = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: natural_key(d.name))
    files, labels = [], []
    for d in classes:
        found = image_files(d)
        files += found
        labels += [d.name] * len(found)
    if len(set(labels)) < 2:
        raise KitError(f"{root} should hold one folder of images per class; found "
                       f"{len(set(labels))} with images")  # fmt: skip
    return files, labels, None


def filename_items(folder: Path, r: Recipe) -> tuple[list[Path], list, None]:
    """Labels from file names: `cat.0.jpg` is a cat."""
    files = images_in(folder / r.train_dir, "train")
    labels = [f.name.split(".")[0] for f in files]
    if len(set(labels)) < 2:
        raise KitError(f"the file names in {folder / r.train_dir} name only {labels[0]!r}; "
                       "they should read <label>.<n>.<ext>")  # fmt: skip
    return files, labels, None


def held_out_items(folder: Path, r: Recipe, sample: pd.DataFrame | None) -> tuple[list, list[Path]]:
    """The test ids in submission order, and each one's image."""
    if sample is not None:
        ids = sample.iloc[:, 0].tolist()
        return ids, match_files(folder / r.test_dir, ids, r.ext, "sample_submission.csv", "test")
    files = images_in(folder / r.test_dir, "test")
    return [f.name if not r.ext else f.stem for f in files], files


def pixels(df: pd.DataFrame, path: Path, size: int) -> torch.Tensor:
    """The pixel columns as a uint8 (N, 1, size, size) tensor, checked."""
    n = df.shape[1]
    side = math.isqrt(n)
    if side * side != n:
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
        raise KitError(f"{path.name} is missing a value on row {row + 2} ({df.columns[col]}); "
                       "every pixel needs a number 0-255")  # fmt: skip
    if values.min() < 0 or values.max() > 255:
        raise KitError(f"{path.name} has pixel values outside 0-255")
    x = torch.from_numpy(values.astype(np.uint8)).view(-1, 1, side, side)
    if side != size:
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True)
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x


def pixel_data(folder: Path, r: Recipe, sample: pd.DataFrame | None) -> dict:
    """A training CSV of label and pixels, a test CSV of (id and) pixels."""
    train_path, test_path = folder / r.labels_csv, folder / r.test_csv
    train = read_table(train_path, "training pixels", (r.label_col, r.group_col))
    test = read_table(test_path, "test pixels", (r.id_col,))
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
    return dict(x=x, labels=labels.tolist(), names=names, test_x=pixels(test, test_path, r.size),
                test_ids=ids, groups=groups, skipped=0)  # fmt: skip


def image_data(folder: Path, r: Recipe, sample: pd.DataFrame | None) -> dict:
    """Image files through the resized cache; unreadable training images are skipped."""
    reader = {"csv": csv_items, "folders": folder_items, "filenames": filename_items}[r.layout]
    files, labels, groups = reader(folder, r)
    ids, test_files = held_out_items(folder, r, sample)
    cache = cache_dir(folder, r.size, r.channels)
    x, bad = load_photos(files, cache, r.size, "train", r.channels)
    if bad:
        print(f"warning: skipped {len(bad)} unreadable training images, e.g. {bad[0].name}")
    keep = [f not in set(bad) for f in files]
    test_x, bad_test = load_photos(test_files, cache, r.size, "test", r.channels)
    if bad_test:
        raise KitError(f"test image {bad_test[0]} cannot be read, and every test image must be "
                       "predicted; download the test set again")  # fmt: skip
    root = folder / r.train_dir
    return dict(x=x, labels=[v for v, k in zip(labels, keep) if k],
                names=[str(f.relative_to(root)) for f, k in zip(files, keep) if k],
                groups=[g for g, k in zip(groups, keep) if k] if groups else None,
                test_x=test_x, test_ids=ids, skipped=len(bad))  # fmt: skip


def class_order(labels) -> list:
    """The distinct labels in order: as numbers when every one is a number (grade 10 after 9,
    as QWK needs them), else in natural order (img10 after img9)."""
    distinct = set(labels)
    if all(number(c) is not None for c in distinct):
        return sorted(distinct, key=lambda c: (number(c), c))
    return sorted(distinct, key=natural_key)


def solution_labels(
    folder: Path, ids: list, classes: list, multi_label: bool = False
) -> torch.Tensor | None:
    """Test labels from `solution.csv` (id, label; multi-label: space-separated tags), which only
    the bundled samples ship."""
    path = folder / "solution.csv"
    if not path.is_file():
        return None
    truth = pd.read_csv(path, dtype=str, keep_default_na=False)
    by_id = dict(zip(truth.iloc[:, 0], truth.iloc[:, 1]))
    index = {c: i for i, c in enumerate(classes)}
    labels = [by_id.get(i) for i in ids]
    if multi_label:
        tags = [str(label).split() for label in labels]
        if not all(t in index for row in tags for t in row):
            return None
        return torch.from_numpy(multi_hot(tags, classes))
    if not all(label in index for label in labels):
        return None  # labels the training data does not have: the recipe's own checks say so
    return torch.tensor([index[label] for label in labels])


def load(folder: Path, r: Recipe) -> Data:
    """Read a competition folder laid out as `r.layout` says; every check on the input is here,
    the submission's shape against `sample_submission.csv` included."""
    sample = read_sample(folder)
    read = pixel_data if r.layout == "pixels" else image_data
    d = read(folder, r, sample)
    if r.multi_label:  # lists of tags, each as written
        labels = [[str(t) for t in v] for v in d["labels"]]
        classes = class_order({t for v in labels for t in v})
    else:
        labels = as_sample_writes(d["labels"], sample, submission_shape(r, sample, None))
        classes = class_order(labels)
    if len(classes) < 2:
        raise KitError(f"the training labels hold only one class ({classes}); nothing to learn")
    index = {c: i for i, c in enumerate(classes)}
    submission_shape(r, sample, classes)  # a mismatch with sample_submission.csv stops here
    if r.multi_label:
        y = torch.from_numpy(multi_hot(labels, classes))
    else:
        y = torch.tensor([index[v] for v in labels], dtype=torch.long)
    return Data(
        x=d["x"],
        y=y,
        classes=classes,
        names=d["names"],
        test_x=d["test_x"],
        test_ids=d["test_ids"],
        test_y=solution_labels(folder, d["test_ids"], classes, r.multi_label),
        skipped=d["skipped"],
        groups=d["groups"],
    )
