"""Image files as the photo layouts (csv, folders, filenames) find and read them: listed in
natural order, named by the CSVs' ids, read through the resized cache."""

import re
import unicodedata
from pathlib import Path

import pandas as pd

from kit.data.images import IMAGE_EXTS, cache_dir, load_photos
from kit.errors import KitError
from kit.recipe import Recipe


def natural_key(name: str) -> list:
    """'img10' after 'img9': digit runs compare as numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


def hidden(name: str) -> bool:
    """What a Mac or a notebook leaves beside the data, never part of it: ._x.jpg (AppleDouble
    metadata under an image's name), __MACOSX/, .ipynb_checkpoints/."""
    return name.startswith((".", "__MACOSX"))


def image_files(folder: Path) -> list[Path]:
    """The images directly inside `folder`, in natural order."""
    files = [p for p in folder.iterdir()
             if p.suffix.lower() in IMAGE_EXTS and not hidden(p.name) and p.is_file()]  # fmt: skip
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


def name_key(name) -> str:
    """A name as ids and files are compared: composed (a Mac writes é as e and an accent), case
    folded (.JPG is .jpg), without spaces around it, nor the folders an id may name
    (train/x.jpg, images\\x.jpg)."""
    return re.split(r"[/\\]", unicodedata.normalize("NFC", str(name)).strip().casefold())[-1]


def by_name(files: list[Path]) -> dict[str, Path | None]:
    """Each image under the names an id may give it: its name and stem as written, then both as
    `name_key` writes them. A key two images share (a.jpg's and a.png's stem) names neither."""
    index = {f.name: f for f in files}
    for keys in (lambda f: (f.stem,), lambda f: (name_key(f.name), name_key(f.stem))):
        more = {}
        for f in files:
            for k in keys(f):
                if k not in index:
                    more[k] = f if more.get(k, f) == f else None
        index |= more
    return index


def file_for(item, ext: str, index: dict) -> Path | None:
    """The image that `item` (an id, with or without its extension) names in `index`."""
    item = str(item)
    for name in (item, item + ext, name_key(item), name_key(item + ext)):
        if index.get(name) is not None:
            return index[name]
    return None


def match_files(folder: Path, items: list, ext: str, csv: str, what: str) -> list[Path]:
    """The image file for every id; a KitError naming the first id without one."""
    index = by_name(images_in(folder, what))
    found = [file_for(i, ext, index) for i in items]
    missing = [str(i) + ext for i, f in zip(items, found) if f is None]
    if missing:
        raise KitError(f"{csv} names {len(missing)} images missing from {folder.name}/, "
                       f"e.g. {missing[0]}")  # fmt: skip
    return found


def held_out_items(folder: Path, r: Recipe, sample: pd.DataFrame | None) -> tuple[list, list[Path]]:
    """The test ids in submission order, and each one's image; a KitError for an empty one."""
    if sample is not None:
        ids = sample.iloc[:, 0].tolist()
        files = match_files(folder / r.test_dir, ids, r.ext, "sample_submission.csv", "test")
    else:
        files = images_in(folder / r.test_dir, "test")
        ids = [f.name if not r.ext else f.stem for f in files]
    empty = next((f for f in files if f.stat().st_size == 0), None)
    if empty is not None:
        raise KitError(f"test image {empty.name} is empty (0 bytes), and every test image must be "
                       f"predicted; download the test set again")  # fmt: skip
    return ids, files


def read_photos(folder: Path, r: Recipe, sample, items: tuple) -> dict:
    """The training `items` (files, labels, groups) and the test images through the resized
    cache; unreadable training images are skipped, an unreadable test image stops the run."""
    files, labels, groups = items
    ids, test_files = held_out_items(folder, r, sample)
    cache = cache_dir(folder, r.size, r.channels, r.resize)
    x, bad = load_photos(files, cache, r.size, "train", r.channels, r.resize)
    if bad:
        print(f"warning: skipped {len(bad)} unreadable training images, e.g. {bad[0].name}")
    unreadable = set(bad)
    keep = [f not in unreadable for f in files]
    test_x, bad_test = load_photos(test_files, cache, r.size, "test", r.channels, r.resize)
    if bad_test:
        raise KitError(f"test image {bad_test[0]} cannot be read, and every test image must be "
                       "predicted; download the test set again")  # fmt: skip
    root = folder / r.train_dir
    return dict(x=x, labels=[v for v, k in zip(labels, keep) if k],
                names=[str(f.relative_to(root)) for f, k in zip(files, keep) if k],
                groups=[g for g, k in zip(groups, keep) if k] if groups else None,
                test_x=test_x, test_ids=ids, skipped=len(bad))  # fmt: skip
