"""Digit Recognizer (MNIST): 28x28 grey handwritten digits from CSV pixels; metric accuracy."""

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from kit.data.layouts import Data
from kit.data.layouts import load as read_layout
from kit.errors import KitError
from kit.recipe import Recipe

RECIPE = Recipe(
    name="mnist",
    slug="digit-recognizer",
    description="Digit Recognizer: 28x28 handwritten digits from CSV pixels, accuracy",
    layout="pixels",  # train.csv: label,pixel0..pixel783; test.csv: pixels; ids count from 1
    id_col="ImageId",
    channels=1,
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
    precision="bf16",  # 1.5-2x faster on CPUs with bf16 units (measured); fp16 on older GPUs
)

DIGITS = [str(d) for d in range(10)]  # the labels, read as text as every label is

# The bundled sample has 1/30 of Kaggle's images, so an epoch is 30x fewer steps: train longer.
SAMPLE = dict(cycles=4)


def load(folder: Path, r: Recipe) -> Data:
    """Kaggle's pixel CSVs (kit/data/layouts.py), whose labels are the digits 0-9."""
    d = read_layout(folder, r)
    bad = [c for c in d.classes if c not in DIGITS]
    if bad:
        row = int((d.y == d.classes.index(bad[0])).nonzero()[0, 0]) + 2  # the file's line
        raise KitError(f"train.csv has labels outside 0-9, e.g. {bad[0]!r} on row {row}")
    return d


def write_sample(dest: Path, seed: int = 0, labelled: int | None = None) -> None:
    """scikit-learn's 1,797 real handwritten digits in Kaggle's layout, test labels aside: a
    fifth as the test set, or all but `labelled` of them (benchmarks/pseudo.py).

    The 8x8 scans (0-16) are scaled to 20x20 and centred in a 28x28 frame of 0-255, as MNIST is.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] * (255 / 16)
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    x = F.pad(x, (4, 4, 4, 4)).round().clamp(0, 255).to(torch.uint8).view(len(x), -1).numpy()
    split = {"train_size": labelled} if labelled else {"test_size": 0.2}
    train, test = train_test_split(
        np.arange(len(x)), random_state=seed, stratify=digits.target, **split
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
