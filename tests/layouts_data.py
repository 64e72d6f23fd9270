"""Small Kaggle folders in each layout `kit new` reads, made from the bundled samples' sources.

Digits: scikit-learn's real handwritten scans, drawn into images of the competition's size,
format and colour mode. Photos: the invasive sample's scenes, with and without the bloom.
Every folder has `sample_submission.csv` as Kaggle ships it and `solution.csv` (test id, label)
so that a run reports its score on held-out labels.
"""

import contextlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from competitions import invasive

PLANTS = ["Black-grass", "Charlock", "Cleavers", "Common Chickweed", "Common wheat", "Fat Hen",
          "Loose Silky-bent", "Maize", "Scentless Mayweed", "Shepherd's Purse"]  # fmt: skip
BREEDS = ["black-and-tan_coonhound", "st. bernard", "German shepherd, alsatian", "pug",
          "toy (poodle)"]  # fmt: skip
N_TRAIN, N_TEST = 400, 100


@contextlib.contextmanager
def working_in(folder):
    """Run the block in `folder` (contextlib.chdir, which Python 3.10 lacks)."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def digits(classes: int, n: int, seed: int):
    """`n` real digit scans (8x8, 0-16) of the first `classes` digits, and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.flatnonzero(d.target < classes)
    pick = np.random.default_rng(seed).permutation(keep)[:n]
    return d.images[pick], d.target[pick]


def digit_image(scan: np.ndarray, side: int, rng, colour: bool) -> Image.Image:
    """A digit drawn into a side x side image: grey ink on black, or coloured ink on a tint."""
    ink = Image.fromarray((scan * 255 / 16).astype(np.uint8)).resize((side * 5 // 7,) * 2,
                                                                    Image.BILINEAR)  # fmt: skip
    frame = Image.new("L", (side, side))
    frame.paste(ink, ((side - ink.width) // 2,) * 2)
    if not colour:
        return frame
    a = np.asarray(frame, dtype=np.float64)[..., None] / 255
    fg, bg = rng.uniform(150, 255, 3), rng.uniform(0, 90, 3)
    return Image.fromarray((a * fg + (1 - a) * bg).astype(np.uint8))


def split(n_train: int, n_test: int, classes: int, seed: int = 0):
    scans, labels = digits(classes, n_train + n_test, seed)
    return (scans[:n_train], labels[:n_train]), (scans[n_train:], labels[n_train:])


def save(image: Image.Image, path: Path, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    (image.convert(mode) if mode else image).save(path)


def draw(dest: Path, scans, n_train: int, dirs: tuple, files: list, side: int, rng, mode=None):
    """Each scan as a colour image: the first `n_train` into dirs[0], the rest into dirs[1];
    `mode(i)` may save image i in another colour mode."""
    for i, scan in enumerate(scans):
        where = dirs[0] if i < n_train else dirs[1]
        save(digit_image(scan, side, rng, True), dest / where / files[i], mode(i) if mode else None)


def cactus(dest: Path) -> str:
    """Aerial Cactus: train.csv `id,has_cactus` with ids that include `.jpg`, 32x32 RGB JPEGs in
    train/train and test/test. Label: the digit is a 1 (not a 0). Metric AUC."""
    rng = np.random.default_rng(1)
    (tx, ty), (vx, vy) = split(260, N_TEST, 2, seed=1)  # the 0s and 1s: 360 scans
    ids = [f"{rng.integers(16**12):012x}.jpg" for _ in range(len(tx) + len(vx))]
    draw(dest, [*tx, *vx], len(tx), ("train/train", "test/test"), ids, 32, rng)
    labels(dest, "train.csv", ("id", "has_cactus"), ids, ty, vy, 0.5)
    return "aerial-cactus-identification"


def histopathologic(dest: Path) -> str:
    """Histopathologic Cancer: train_labels.csv `id,label`, ids without extension, 40x40 RGB
    TIFFs in train/ and test/; sample_submission's label column holds integers 0. Label: the
    digit is a 1. AUC."""
    rng = np.random.default_rng(2)
    (tx, ty), (vx, vy) = split(260, N_TEST, 2, seed=2)
    ids = [f"{rng.integers(16**15):015x}" for _ in range(len(tx) + len(vx))]
    draw(dest, [*tx, *vx], len(tx), ("train", "test"), [f"{i}.tif" for i in ids], 40, rng)
    labels(dest, "train_labels.csv", ("id", "label"), ids, ty, vy, 0)
    return "histopathologic-cancer-detection"


def cassava(dest: Path) -> str:
    """Cassava Leaf Disease: train.csv `image_id,label` (0-4), JPEGs in train_images/ and
    test_images/ (some saved as CMYK); accuracy."""
    rng = np.random.default_rng(3)
    (tx, ty), (vx, vy) = split(N_TRAIN, N_TEST, 5, seed=3)
    names = [f"{rng.integers(10**9)}.jpg" for _ in range(len(tx) + len(vx))]
    draw(dest, [*tx, *vx], len(tx), ("train_images", "test_images"), names, 32, rng,
         lambda i: "CMYK" if i % 7 == 0 else None)  # fmt: skip
    labels(dest, "train.csv", ("image_id", "label"), names, ty, vy, 4)
    return "cassava-leaf-disease-classification"


def dog_breeds(dest: Path) -> str:
    """Dog Breed Identification: labels.csv `id,breed` with string classes whose names have
    spaces and punctuation; sample_submission holds `id` and one probability column per breed,
    in its own (not alphabetical) order. Log loss."""
    rng = np.random.default_rng(4)
    (tx, ty), (vx, vy) = split(N_TRAIN, N_TEST, 5, seed=4)
    ids = [f"{rng.integers(16**10):010x}" for _ in range(len(tx) + len(vx))]
    draw(dest, [*tx, *vx], len(tx), ("train", "test"), [f"{i}.jpg" for i in ids], 32, rng)
    pd.DataFrame({"id": ids[: len(tx)], "breed": [BREEDS[t] for t in ty]}).to_csv(
        dest / "labels.csv", index=False)  # fmt: skip
    test_ids = ids[len(tx) :]
    order = [BREEDS[i] for i in rng.permutation(len(BREEDS))]
    sample = pd.DataFrame({"id": test_ids, **{b: 1 / len(BREEDS) for b in order}})
    sample.to_csv(dest / "sample_submission.csv", index=False)
    solution(dest, test_ids, [BREEDS[t] for t in vy])
    return "dog-breed-identification"


def plant_seedlings(dest: Path) -> str:
    """Plant Seedlings: train/<species>/*.png (RGBA and palette PNGs among them), test/*.png,
    sample_submission `file,species`; micro F1."""
    rng = np.random.default_rng(5)
    (tx, ty), (vx, vy) = split(N_TRAIN, N_TEST, 5, seed=5)
    for i, (scan, label) in enumerate(zip(tx, ty)):
        mode = ("RGBA", "P", None)[i % 3]
        save(digit_image(scan, 32, rng, True), dest / "train" / PLANTS[label] / f"{i:05x}.png",
             mode)  # fmt: skip
    files = [f"{rng.integers(16**9):09x}.png" for _ in vx]
    for scan, name in zip(vx, files):
        save(digit_image(scan, 32, rng, True), dest / "test" / name, "RGBA")
    pd.DataFrame({"file": files, "species": "Maize"}).to_csv(dest / "sample_submission.csv",
                                                             index=False)  # fmt: skip
    solution(dest, files, [PLANTS[t] for t in vy])
    return "plant-seedlings-classification"


def dogs_vs_cats(dest: Path) -> str:
    """Dogs vs Cats: photos named train/cat.0.jpg and train/dog.0.jpg, test/1.jpg...;
    sample_submission `id,label` holds the probability of a dog. Log loss. "Dogs" are the
    invasive sample's photos with the bloom in them, "cats" the scenes without."""
    rng = np.random.default_rng(6)
    photos = {name: invasive.source_photo(name) for name in invasive.SOURCES}
    counts = {"cat": 0, "dog": 0}
    for _ in range(100):
        kind = "dog" if rng.random() < 0.5 else "cat"
        photo = invasive.sample_photo(photos, kind == "dog", rng).resize((80, 60))
        save(photo, dest / "train" / f"{kind}.{counts[kind]}.jpg")
        counts[kind] += 1
    truth = []
    for i in range(1, 41):
        dog = bool(rng.random() < 0.5)
        save(invasive.sample_photo(photos, dog, rng).resize((80, 60)), dest / "test" / f"{i}.jpg")
        truth.append(int(dog))
    ids = list(range(1, 41))
    pd.DataFrame({"id": ids, "label": 0.5}).to_csv(dest / "sample_submission.csv", index=False)
    solution(dest, ids, ["dog" if t else "cat" for t in truth])
    return "dogs-vs-cats-redux-kernels-edition"


def kannada(dest: Path) -> str:
    """Kannada-MNIST: train.csv `label,pixel0..`; test.csv `id,pixel0..` with ids from 0;
    sample_submission `id,label`; accuracy."""
    rng = np.random.default_rng(7)
    (tx, ty), (vx, vy) = split(N_TRAIN, N_TEST, 10, seed=7)
    pix = [f"pixel{i}" for i in range(784)]

    def rows(scans):
        return np.stack([np.asarray(digit_image(s, 28, rng, False)).ravel() for s in scans])

    dest.mkdir(parents=True, exist_ok=True)
    train = pd.DataFrame(rows(tx), columns=pix)
    train.insert(0, "label", ty)
    train.to_csv(dest / "train.csv", index=False)
    test = pd.DataFrame(rows(vx), columns=pix)
    test.insert(0, "id", range(len(vx)))
    test.to_csv(dest / "test.csv", index=False)
    pd.DataFrame({"id": range(len(vx)), "label": 0}).to_csv(dest / "sample_submission.csv",
                                                            index=False)  # fmt: skip
    solution(dest, list(range(len(vx))), vy)
    return "Kannada-MNIST"


def labels(dest: Path, csv: str, columns: tuple, ids: list, train_y, test_y, fill) -> None:
    """The labels CSV of the first len(train_y) ids, a sample submission of the rest filled
    with `fill`, and their solution."""
    n = len(train_y)
    pd.DataFrame(dict(zip(columns, (ids[:n], train_y)))).to_csv(dest / csv, index=False)
    pd.DataFrame(dict(zip(columns, (ids[n:], fill)))).to_csv(dest / "sample_submission.csv",
                                                             index=False)  # fmt: skip
    solution(dest, ids[n:], test_y)


def solution(dest: Path, ids, labels) -> None:
    pd.DataFrame({"id": ids, "label": labels}).to_csv(dest / "solution.csv", index=False)


LAYOUTS = {
    "cactus": cactus,
    "histopathologic": histopathologic,
    "cassava": cassava,
    "breeds": dog_breeds,
    "seedlings": plant_seedlings,
    "dogscats": dogs_vs_cats,
    "kannada": kannada,
}


def write(name: str, parent: Path) -> Path:
    """The folder for layout `name`, named after its competition's slug, under `parent`."""
    tmp = parent / f"{name}-tmp"
    slug = LAYOUTS[name](tmp)
    return tmp.rename(parent / slug)
