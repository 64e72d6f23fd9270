"""Small Kaggle folders of the three label kinds beyond one class per row, laid out as the real
competitions are, made from scikit-learn's real digit scans (as tests/layouts_data.py does):

- one-hot: Plant Pathology 2020 (`image_id,healthy,multiple_diseases,rust,scab`, train and test
  images side by side in images/);
- multi-label: Planet (`train_v2.csv` of `image_name,tags`, a 2x2 grid of digits per image, one
  tag per digit present; train-jpg/, test-jpg/);
- top-k: Humpback Whale (`Image,Id`, many whales of a handful of images each, some of one, and
  `new_whale`; the sample lists 5 labels per image).

Each has `sample_submission.csv` as Kaggle ships it and `solution.csv` (id, label; tags
space-separated) so that a run scores itself on held-out labels.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from layouts_data import digit_image, save, solution
from PIL import Image

DISEASES = ["healthy", "multiple_diseases", "rust", "scab"]
TAGS = ["agriculture", "bare_ground", "clear", "haze", "primary", "water"]  # Planet's, with _
PLANET_SAMPLE = "primary clear agriculture road water"  # what Kaggle's sample holds
WHALE_SAMPLE = "new_whale w_1287fbc w_98baff9 w_7554f44 w_1eafe46"
# a whale is a digit in one ink
INKS = [
    (255, 80, 80),
    (80, 255, 80),
    (90, 140, 255),
    (255, 230, 60),
    (230, 90, 255),
    (80, 240, 240),
]


def scans_by_digit(seed: int) -> dict[int, list]:
    """scikit-learn's digit scans, grouped by digit, each group shuffled."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    return {k: list(d.images[rng.permutation(np.flatnonzero(d.target == k))]) for k in range(10)}


def plant_pathology(dest: Path) -> str:
    """One 0/1 column per disease in train.csv, probabilities per disease in the sample; the
    digit 0-3 is the disease. images/ holds Train_<n>.jpg and Test_<n>.jpg. Mean column AUC."""
    rng = np.random.default_rng(11)
    pools = scans_by_digit(11)
    train_y = rng.integers(0, 4, 160)
    test_y = rng.integers(0, 4, 40)
    for split, ys in (("Train", train_y), ("Test", test_y)):
        for i, y in enumerate(ys):
            save(digit_image(pools[y].pop(), 32, rng, True), dest / "images" / f"{split}_{i}.jpg")
    onehot = np.eye(4, dtype=int)[train_y]
    train = pd.DataFrame({"image_id": [f"Train_{i}" for i in range(len(train_y))]})
    train[DISEASES] = onehot
    train.to_csv(dest / "train.csv", index=False)
    test_ids = [f"Test_{i}" for i in range(len(test_y))]
    pd.DataFrame({"image_id": test_ids}).to_csv(dest / "test.csv", index=False)
    sample = pd.DataFrame({"image_id": test_ids, **{d: 0.25 for d in DISEASES}})
    sample.to_csv(dest / "sample_submission.csv", index=False)
    solution(dest, test_ids, [DISEASES[y] for y in test_y])
    return "plant-pathology-2020-fgvc7"


def grid_image(pools: dict, digits: list, rng) -> Image.Image:
    """A 32x32 colour image of four 16x16 cells: `digits` in random cells, the rest dark."""
    frame = Image.new("RGB", (32, 32), tuple(int(v) for v in rng.integers(0, 40, 3)))
    cells = rng.permutation(4)[: len(digits)]
    for cell, digit in zip(cells, digits):
        tile = digit_image(pools[digit][int(rng.integers(len(pools[digit])))], 16, rng, True)
        frame.paste(tile, (16 * (cell % 2), 16 * (cell // 2)))
    return frame


def planet(dest: Path, n_train: int = 200, n_test: int = 40) -> str:
    """Several tags per image: the digits 0-5 it shows, 1-3 of them. Samples-averaged F2."""
    rng = np.random.default_rng(12)
    pools = scans_by_digit(12)
    rows = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            digits = sorted(rng.choice(6, size=int(rng.integers(1, 4)), replace=False).tolist())
            save(grid_image(pools, digits, rng), dest / f"{split}-jpg" / f"{split}_{i}.jpg")
            rows[split].append((f"{split}_{i}", " ".join(TAGS[d] for d in digits)))
    train = pd.DataFrame(rows["train"], columns=["image_name", "tags"])
    train.to_csv(dest / "train_v2.csv", index=False)
    ids = [name for name, _ in rows["test"]]
    pd.DataFrame({"image_name": ids, "tags": PLANET_SAMPLE}).to_csv(
        dest / "sample_submission.csv", index=False)  # fmt: skip
    solution(dest, ids, [tags for _, tags in rows["test"]])
    return "planet-understanding-the-amazon-from-space"


def whale_image(scan, ink, rng) -> Image.Image:
    """A digit in the whale's ink (a little varied) on a dark random ground, 32x32."""
    grey = np.asarray(digit_image(scan, 32, rng, False), dtype=np.float64)[..., None] / 255
    fg = np.clip(np.array(ink) + rng.normal(0, 12, 3), 0, 255)
    bg = rng.uniform(0, 60, 3)
    return Image.fromarray((grey * fg + (1 - grey) * bg).astype(np.uint8))


def humpback(dest: Path, inks: int = 3, most: int = 6, new: int = 20) -> str:
    """Whales w_<hex>: the digits 1-9 in `inks` inks, 1 to `most` images each (some whales seen
    once); `new` new_whale images: the digit 0 in any ink. The sample lists 5 labels per image.
    MAP@5."""
    rng = np.random.default_rng(13)
    pools = scans_by_digit(13)
    whales = [(d, ink) for d in range(1, 10) for ink in range(inks)]
    names = {w: f"w_{rng.integers(16**7):07x}" for w in whales}
    train, test = [], []
    for i, w in enumerate(whales):
        for _ in range(1 + i % most):  # 1, 2, ... `most` images, then again
            train.append((w, pools[w[0]].pop()))
        if i % most >= 2:  # whales with 3 or more training images are seen again in the test set
            test.append((w, pools[w[0]].pop()))
    for _ in range(new):
        train.append(((0, int(rng.integers(inks))), pools[0].pop()))
    for _ in range(new // 3):
        test.append(((0, int(rng.integers(inks))), pools[0].pop()))
    labels = []
    for split, items in (("train", train), ("test", test)):
        for w, scan in items:
            file = f"{rng.integers(16**9):09x}.jpg"
            save(whale_image(scan, INKS[w[1]], rng), dest / split / file)
            labels.append((split, file, "new_whale" if w[0] == 0 else names[w]))
    df = pd.DataFrame(labels, columns=["split", "Image", "Id"])
    df[df["split"] == "train"][["Image", "Id"]].to_csv(dest / "train.csv", index=False)
    held = df[df["split"] == "test"]
    pd.DataFrame({"Image": held["Image"], "Id": WHALE_SAMPLE}).to_csv(
        dest / "sample_submission.csv", index=False)  # fmt: skip
    solution(dest, held["Image"].tolist(), held["Id"].tolist())
    return "humpback-whale-identification"


KINDS = {"pathology": plant_pathology, "planet": planet, "whales": humpback}


def write(name: str, parent: Path) -> Path:
    """The folder for `name`, named after its competition's slug, under `parent`."""
    tmp = parent / f"{name}-tmp"
    slug = KINDS[name](tmp)
    return tmp.rename(parent / slug)
