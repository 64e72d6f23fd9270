"""Digit Recognizer (MNIST): 28x28 grey handwritten digits from CSV pixels; metric accuracy."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from kit.data import Data
from kit.errors import KitError
from kit.recipe import Recipe

RECIPE = Recipe(
    name="mnist",
    slug="digit-recognizer",
    description="Digit Recognizer: 28x28 handwritten digits from CSV pixels, accuracy",
    arch="digitnet",  # a small CNN from scratch: ImageNet features do not help 28 px digits
    pretrained=False,
    size=28,
    valid_pct=0.1,  # 4,200 digits already measure accuracy to +-0.3%
    bs=128,
    rotate=10,  # handwriting slants a little
    shift=0.1,  # and is not perfectly centred
    zoom=1.1,
    flip=False,  # a mirrored 2 is not a 2
    lighting=0.0,  # pixels are ink density, not lighting
    pad_mode="zeros",  # the background is black
    head_cycles=0,  # nothing pretrained to protect: train everything from the start
    lr_mult=1,  # every layer starts from scratch, so every layer learns at the same rate
    precision="bf16",  # 1.5-2x faster on CPUs with bf16 units (measured), and on GPUs
)

# The bundled sample has 1/30 of Kaggle's images, so an epoch is 30x fewer steps: train longer.
SAMPLE = dict(cycles=4)

CLASSES = list(range(10))


def read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise KitError(f"{path} is missing; the folder should hold Kaggle's train.csv and test.csv")
    try:
        return pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError:
        raise KitError(f"{path} is empty; download it again from Kaggle") from None


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
        raise KitError(
            f"{path.name} column {col} has a non-numeric value {df[col].iloc[row]!r} "
            f"on row {row + 2}; pixels must be numbers 0-255"
        )
    values = df.to_numpy()
    if values.dtype.kind == "f" and np.isnan(values).any():
        row, col = np.argwhere(np.isnan(values))[0]
        raise KitError(
            f"{path.name} is missing a value on row {row + 2} ({df.columns[col]}); "
            "every pixel needs a number 0-255"
        )
    if values.min() < 0 or values.max() > 255:
        raise KitError(f"{path.name} has pixel values outside 0-255")
    x = torch.from_numpy(values.astype(np.uint8)).view(-1, 1, side, side)
    if side != size:
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True)
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x


def load(folder: Path, r: Recipe) -> Data:
    """train.csv (label, pixel0..) and test.csv (pixel0..) into uint8 tensors."""
    train = read_csv(folder / "train.csv")
    test = read_csv(folder / "test.csv")
    if "label" not in train.columns:
        raise KitError("train.csv has no 'label' column; its first column must be the digit label")
    if len(test) == 0:
        raise KitError("test.csv has no rows; there is nothing to predict")
    labels = train.pop("label")
    if train.shape[1] != test.shape[1]:
        raise KitError(
            f"train.csv has {train.shape[1]} pixel columns but test.csv has "
            f"{test.shape[1]}; both must hold the same image size"
        )
    numeric = pd.to_numeric(labels, errors="coerce")
    bad = labels[numeric.isna() | ~numeric.isin(CLASSES)]
    if len(bad):
        raise KitError(
            f"train.csv has labels outside 0-9, e.g. {str(bad.iloc[0])!r} on row {bad.index[0] + 2}"
        )
    ids = list(range(1, len(test) + 1))  # Kaggle's ImageId counts test rows from 1
    solution = folder / "solution.csv"  # only the bundled sample ships its test labels
    test_y = torch.tensor(pd.read_csv(solution)["Label"].to_numpy()) if solution.exists() else None
    return Data(
        x=pixels(train, folder / "train.csv", r.size),
        y=torch.tensor(numeric.to_numpy(dtype=np.int64)),
        classes=CLASSES,
        names=[f"train row {i + 1}" for i in range(len(train))],
        test_x=pixels(test, folder / "test.csv", r.size),
        test_ids=ids,
        test_y=test_y,
    )


def submission(ids: list, probs: np.ndarray, classes: list) -> pd.DataFrame:
    return pd.DataFrame({"ImageId": ids, "Label": [classes[i] for i in probs.argmax(1)]})


def write_sample(dest: Path, seed: int = 0) -> None:
    """scikit-learn's 1,797 real handwritten digits in Kaggle's layout, test labels aside.

    The 8x8 scans (0-16) are scaled to 20x20 and centred in a 28x28 frame of 0-255, as MNIST is.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] * (255 / 16)
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    x = F.pad(x, (4, 4, 4, 4)).round().clamp(0, 255).to(torch.uint8).view(len(x), -1).numpy()
    train, test = train_test_split(
        np.arange(len(x)), test_size=0.2, random_state=seed, stratify=digits.target
    )
    cols = [f"pixel{i}" for i in range(784)]
    train_df = pd.DataFrame(x[train], columns=cols)
    train_df.insert(0, "label", digits.target[train])
    train_df.to_csv(dest / "train.csv", index=False)
    pd.DataFrame(x[test], columns=cols).to_csv(dest / "test.csv", index=False)
    ids = np.arange(1, len(test) + 1)
    pd.DataFrame({"ImageId": ids, "Label": 0}).to_csv(dest / "sample_submission.csv", index=False)
    pd.DataFrame({"ImageId": ids, "Label": digits.target[test]}).to_csv(
        dest / "solution.csv", index=False
    )
