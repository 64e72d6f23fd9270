"""Kaggle's image-classification layouts read into memory, checked.

A recipe names its layout and the columns and folders it found (`kit new` writes them); each
layout has its reader in kit/data/readers/:

- `csv`: images in a folder and a CSV of id and label (Aerial Cactus, Cassava, Dog Breed...);
  the label may be one 0/1 column per class (Plant Pathology), or with `multi_label`
  space-separated tags (Planet);
- `folders`: one training folder per class (Plant Seedlings);
- `filenames`: the label is the file name up to its first dot, `cat.0.jpg` (Dogs vs Cats);
- `pixels`: a CSV of pixel values per image (Digit Recognizer, Kannada-MNIST).

`sample_submission.csv` is the contract (kit/data/submission.py): its ids, in its order, are
the test items, and its columns must agree with the training labels.
"""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from kit.data.label_kinds import class_order
from kit.data.readers import class_folders, csv_images, file_names, pixel_csv
from kit.data.submission import as_sample_writes, read_sample, submission_shape
from kit.errors import KitError
from kit.evaluate.predictions import multi_hot
from kit.recipe import Recipe

# The layouts by their recipe name, in the order `kit new` tries them (kit/data/inspect.py).
READERS = {"pixels": pixel_csv, "csv": csv_images, "folders": class_folders,
           "filenames": file_names}  # fmt: skip


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
    d = READERS[r.layout].read(folder, r, sample)
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
