"""The folders layout (Plant Seedlings): a training folder holding one folder of images per
class, the folder's name the class."""

import unicodedata
from collections import Counter
from pathlib import Path

import pandas as pd

from kit.data.readers.contents import Contents, labelled_folder
from kit.data.readers.files import hidden, image_files, natural_key, read_photos
from kit.errors import KitError
from kit.recipe import Recipe

NAME = "one folder per class (train/<class>/*.png)"


def detect(seen: Contents) -> dict | None:
    """A folder whose subfolders (two or more) each hold images of one class."""
    parents = Counter(d.parent for d in seen.dirs if d != seen.folder)
    for parent, n in parents.most_common():
        if n < 2 or parent == seen.folder or "test" in parent.name.lower():
            continue  # class folders sit in a training folder, not beside train/ and test/
        return labelled_folder(seen, parent, "folders", items, lambda d, files, labels: (
            f"{d}/ holds {len(set(labels))} class folders, {len(files):,} images"))  # fmt: skip
    return None


def items(folder: Path, r: Recipe) -> tuple[list[Path], list, None]:
    """One subfolder of the training folder per class."""
    root = folder / r.train_dir
    if not root.is_dir():
        raise KitError(f"the train folder {root} is missing; it should hold one folder per class")
    folders = [d for d in root.iterdir() if d.is_dir() and not hidden(d.name)]
    classes = sorted(folders, key=lambda d: natural_key(d.name))
    files, labels = [], []
    for d in classes:
        found = image_files(d)
        files += found
        labels += [unicodedata.normalize("NFC", d.name)] * len(found)  # as the sample writes it
    if len(set(labels)) < 2:
        raise KitError(f"{root} should hold one folder of images per class; found "
                       f"{len(set(labels))} with images")  # fmt: skip
    return files, labels, None


def read(folder: Path, r: Recipe, sample: pd.DataFrame | None) -> dict:
    return read_photos(folder, r, sample, items(folder, r))
