"""Invasive Species Monitoring: is invasive hydrangea in the photo? Transfer learning; ROC AUC."""

import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageEnhance

from kit.archives import unpack
from kit.data import Data
from kit.errors import KitError
from kit.images import cache_dir, load_photos
from kit.recipe import Recipe

RECIPE = Recipe(
    name="invasive",
    slug="invasive-species-monitoring",
    description="Invasive Species Monitoring: hydrangea in 1154x866 photos, ROC AUC",
    metric="auc",
    arch="tf_efficientnet_lite0",  # ImageNet weights ship in a pip package: works offline
    size=224,
    bs=32,
    rotate=10,  # photos taken from the side: small tilts,
    zoom=1.1,  # a little closer or further, as the seed's max_zoom=1.1,
    flip=True,  # mirrored left-right, never upside down,
    lighting=0.2,  # and in every light
    head_cycles=3,  # the seed's fit(lr, 3, cycle_len=1) on the new head
)

# The bundled sample's photos are small: 128 px keeps the whole recipe to minutes on 2 CPU cores.
SAMPLE = dict(size=128)

CLASSES = [0, 1]
SOURCES = {  # real photos that installed wheels ship: (package, path inside it)
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "temple": ("sklearn", "datasets/images/china.jpg"),
    "hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}


def photo_files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise KitError(f"the {what} folder {folder} is missing; unpack Kaggle's {what}.7z there")
    files = sorted(folder.glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))
    if not files:
        raise KitError(f"the {what} folder {folder} has no .jpg photos")
    return files


def check_photos_exist(folder: Path, split: str, names: list, csv: str) -> None:
    """A KitError naming the first of `names` that has no photo in `folder/split`."""
    missing = [n for n in names if not (folder / split / f"{n}.jpg").is_file()]
    if missing:
        raise KitError(f"{csv} names {len(missing)} photos missing from {split}/, "
                       f"e.g. {missing[0]}.jpg")  # fmt: skip


def read_labels(folder: Path) -> pd.DataFrame:
    path = folder / "train_labels.csv"
    if not path.is_file():
        raise KitError(f"{path} is missing; it holds the columns name,invasive")
    labels = pd.read_csv(path, dtype={"name": str})
    if list(labels.columns[:2]) != ["name", "invasive"]:
        raise KitError(f"{path.name} must have the columns name,invasive")
    dup = labels["name"][labels["name"].duplicated()]
    if len(dup):
        raise KitError(f"{path.name} names photo {dup.iloc[0]} more than once")
    bad = labels[~labels["invasive"].isin(CLASSES)]
    if len(bad):
        raise KitError(f"{path.name} labels {bad['name'].iloc[0]} as {bad['invasive'].iloc[0]!r}; "
                       "labels must be 0 or 1")  # fmt: skip
    check_photos_exist(folder, "train", labels["name"], path.name)
    return labels


def test_names(folder: Path) -> list[str]:
    """sample_submission.csv's order when it exists, else the test folder's numeric order."""
    files = photo_files(folder / "test", "test")
    sample = folder / "sample_submission.csv"
    if sample.is_file():
        names = pd.read_csv(sample, dtype={"name": str})["name"].tolist()
        check_photos_exist(folder, "test", names, sample.name)
        return names
    return [f.stem for f in files]


def load(folder: Path, r: Recipe) -> Data:
    """train/ and test/ photos through the resized cache; corrupt training photos are skipped."""
    if not (folder / "train").is_dir():
        unpack(folder)
    labels = read_labels(folder)
    test_ids = test_names(folder)
    cache = cache_dir(folder, r.size)
    train_files = [folder / "train" / f"{n}.jpg" for n in labels["name"]]
    x, bad = load_photos(train_files, cache / "train", r.size, "train")
    if bad:
        print(f"warning: skipped {len(bad)} unreadable training photos, e.g. {bad[0].name}")
    unreadable = set(bad)
    keep = [f not in unreadable for f in train_files]
    test_x, bad_test = load_photos([folder / "test" / f"{n}.jpg" for n in test_ids],
                                   cache / "test", r.size, "test")  # fmt: skip
    if bad_test:
        raise KitError(f"test photo {bad_test[0]} cannot be read, and every test photo must be "
                       "predicted; download the test set again")  # fmt: skip
    solution = folder / "solution.csv"  # only the bundled sample ships its test labels
    test_y = None
    if solution.is_file():
        truth = pd.read_csv(solution, dtype={"name": str}).set_index("name")["invasive"]
        test_y = torch.tensor(truth.loc[test_ids].to_numpy())
    kept = labels[keep]
    return Data(x=x, y=torch.tensor(kept["invasive"].to_numpy(dtype=np.int64)), classes=CLASSES,
                names=[f"{n}.jpg" for n in kept["name"]], test_x=test_x,
                test_ids=test_ids, test_y=test_y, skipped=len(bad))  # fmt: skip


def submission(ids: list, probs: np.ndarray, classes: list) -> pd.DataFrame:
    """The probability of class 1 (ROC AUC is scored on ranks, never on hard labels)."""
    return pd.DataFrame({"name": [int(i) if str(i).isdigit() else i for i in ids],
                         "invasive": probs[:, 1].astype(np.float64)})  # fmt: skip


def source_photo(name: str) -> Image.Image:
    package, path = SOURCES[name]
    root = Path(importlib.import_module(package).__file__).parent
    return Image.open(root / path).convert("RGB")


BLOOM = (170, 80, 450, 370)  # where the dahlia is in scikit-learn's flower.jpg


def sample_photo(photos: dict, invasive: bool, rng) -> Image.Image:
    """A 400x300 photo: a random 4:3 crop of a source photo at a random scale. An invasive one
    is either a crop of the flower photo or a background with the bloom pasted in small."""
    source = "flower" if invasive and rng.random() < 0.5 else rng.choice(["temple", "hopper"])
    image = photos[source]
    w, h = image.size
    cw = int(min(w, h * 4 / 3) * rng.uniform(0.35, 0.9))
    ch = int(cw * 3 / 4)
    left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    crop = image.crop((left, top, left + cw, top + ch)).resize((400, 300))
    if invasive and source != "flower":
        side = int(rng.uniform(0.2, 0.5) * 300)
        bloom = photos["flower"].crop(BLOOM).resize((side, side))
        crop.paste(bloom, (int(rng.integers(0, 400 - side)), int(rng.integers(0, 300 - side))))
    if rng.random() < 0.5:
        crop = crop.transpose(0)  # mirror left-right
    return ImageEnhance.Brightness(crop).enhance(rng.uniform(0.7, 1.3))


def write_sample(dest: Path, n_train: int = 120, n_test: int = 48, seed: int = 0) -> None:
    """Invasive-style photos cut from real photos that installed wheels ship, labels 1 where
    the flower is in the photo (whole, or small in a temple or portrait scene), else 0;
    test labels go to solution.csv."""
    rng = np.random.default_rng(seed)
    photos = {name: source_photo(name) for name in SOURCES}
    for split, n in (("train", n_train), ("test", n_test)):
        (dest / split).mkdir()
        labels = (rng.random(n) < 0.6).astype(int)  # invasive the larger class, as on Kaggle
        for i, label in enumerate(labels, 1):
            sample_photo(photos, bool(label), rng).save(dest / split / f"{i}.jpg", quality=90)
        df = pd.DataFrame({"name": range(1, n + 1), "invasive": labels})
        if split == "train":
            df.to_csv(dest / "train_labels.csv", index=False)
        else:
            df.to_csv(dest / "solution.csv", index=False)
            df.assign(invasive=0.5).to_csv(dest / "sample_submission.csv", index=False)
