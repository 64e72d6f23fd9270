"""The filenames layout (Dogs vs Cats): the label is a file's name up to its first dot,
`cat.0.jpg`."""

import unicodedata
from pathlib import Path

import pandas as pd

from kit.data.readers.contents import Contents, labelled_folder
from kit.data.readers.files import image_files, images_in, read_photos
from kit.errors import KitError
from kit.recipe import Recipe

NAME = "the label in the file name (train/cat.0.jpg)"


def name_label(f: Path) -> str:
    """`cat` of cat.0.jpg, composed as the sample writes it (a Mac decomposes é in names)."""
    return unicodedata.normalize("NFC", f.name.split(".")[0])


def detect(seen: Contents) -> dict | None:
    """A folder of images named <label>.<n>.<ext>, with two or more labels."""
    for d, n in sorted(seen.dirs.items(), key=lambda kv: -kv[1]):
        files = image_files(d)
        labels = [name_label(f) for f in files if f.name.count(".") >= 2]
        if len(labels) < 0.9 * len(files) or not 2 <= len(set(labels)) <= len(files) / 2:
            continue
        if all(label.isdigit() for label in set(labels)):
            continue
        return labelled_folder(seen, d, "filenames", items, lambda train_dir, *_, n=n: (
            f"{train_dir}/: {n:,} images named <label>.<n>.<ext>"))  # fmt: skip
    return None


def items(folder: Path, r: Recipe) -> tuple[list[Path], list, None]:
    """Labels from file names: `cat.0.jpg` is a cat."""
    files = images_in(folder / r.train_dir, "train")
    labels = [name_label(f) for f in files]
    if len(set(labels)) < 2:
        raise KitError(f"the file names in {folder / r.train_dir} name only {labels[0]!r}; "
                       "they should read <label>.<n>.<ext>")  # fmt: skip
    return files, labels, None


def read(folder: Path, r: Recipe, sample: pd.DataFrame | None) -> dict:
    return read_photos(folder, r, sample, items(folder, r))
