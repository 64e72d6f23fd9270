"""What a downloaded competition folder holds, looked at once for every reader's `detect()`:
its CSVs, its image folders and the names in them, and the sample submission."""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kit.data.readers.files import by_name, hidden, image_files, name_key
from kit.data.readers.tables import read_csv
from kit.data.submission import sample_path
from kit.errors import KitError
from kit.recipe import Recipe

# Words in a CSV's name that say it holds no training labels (test.csv lists the test images).
NOT_TRAINING = ("test", "sample", "submission", "solution")


@dataclass
class Contents:
    """A competition folder as `kit new` found it."""

    folder: Path
    sample: pd.DataFrame | None  # sample_submission.csv, as text
    csvs: dict[Path, pd.DataFrame]  # the CSVs at the top, as text (pixel values as numbers)
    dirs: dict[Path, int]  # every folder holding images directly, with their count
    index: dict[Path, dict]  # per image folder: its images by every name an id may give them


def look(folder: Path, sample) -> Contents:
    """Every CSV and image folder listed once, for every layout tried."""
    dirs = image_dirs(folder)
    return Contents(folder, sample, tables(folder), dirs, name_index(dirs))


def image_dirs(folder: Path, depth: int = 4) -> dict[Path, int]:
    """Every folder under `folder` (to `depth`) that holds images directly, with their count."""
    found = {}
    for d in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        parts = d.relative_to(folder).parts
        if any(hidden(part) for part in parts) or len(parts) > depth:
            continue
        n = len(image_files(d))
        if n:
            found[d] = n
    return found


def tables(folder: Path) -> dict[Path, pd.DataFrame]:
    """The CSVs at the top of the folder, except the sample submission and solution."""
    skip = {sample_path(folder), folder / "solution.csv"}
    return {p: read_csv(p, "CSV", None) for p in sorted(folder.glob("*.csv")) if p not in skip}


def name_index(dirs: dict) -> dict[Path, dict]:
    """Per image folder: its images under every name an id may give them (files.by_name)."""
    return {d: by_name(image_files(d)) for d in dirs}


def rel(folder: Path, d: Path) -> str:
    return d.relative_to(folder).as_posix() or "."


def best_match(values: list, index: dict) -> tuple[Path | None, float, str]:
    """The image folder that names the most `values`, the share it names, and the extension
    to add to them ("" when they carry their own)."""
    best = (None, 0.0, "")
    values = [str(v) for v in values]
    keys = [name_key(v) for v in values]
    for d, names in index.items():
        found = [(k, names.get(v) or names.get(k)) for v, k in zip(values, keys)]
        hits = ["" if name_key(f.name) == k else f.suffix for k, f in found if f is not None]
        share = len(hits) / max(len(values), 1)
        if share > best[1]:
            best = (d, share, Counter(hits).most_common(1)[0][0])
    return best


def labelled_first(seen: Contents) -> list[Path]:
    """The CSVs that may hold the training labels, the likeliest first: train.csv, then those
    sharing a column with the sample, then train* and *label* names; never a test CSV (Kannada's
    Dig-MNIST.csv and others' extra.csv come after train.csv)."""
    csvs, sample = seen.csvs, seen.sample

    def rank(p):
        stem = p.stem.lower()
        shared = sample is not None and bool(set(csvs[p].columns) & set(sample.columns))
        return stem != "train", not shared, not (stem.startswith("train") or "label" in stem)

    maybe = [p for p in csvs if not any(w in p.stem.lower() for w in NOT_TRAINING)]
    return sorted(maybe, key=lambda p: (*rank(p), p.name))


def left_out(seen: Contents, chosen: Path, label, candidates: list) -> str | None:
    """The comment on labels_csv: the other CSVs with the same labels, seen and not used."""
    others = [p.name for p in candidates if p != chosen and label in seen.csvs[p].columns]
    return f"the training set; also labelled, left out: {', '.join(others)}" if others else None


def test_folder(seen: Contents, exclude: Path) -> tuple[str, str]:
    """The image folder that holds sample_submission.csv's ids (the training folder itself when
    train and test images share one, as Plant Pathology's images/ does), else one named test."""
    folder, dirs, index, sample = seen.folder, seen.dirs, seen.index, seen.sample
    candidates = {d: n for d, n in index.items() if d != exclude and exclude not in d.parents}
    if sample is not None:
        ids = sample.iloc[:, 0].tolist()
        shared = {exclude: index[exclude]} if exclude in index else {}
        for where in (candidates, shared):
            d, share, _ = best_match(ids, where)
            if d is not None and share >= 0.9:
                if d == exclude:
                    return rel(folder, d), (f"{len(ids):,} of its {dirs[d]:,} images, named by "
                                            "the sample, beside the training images")  # fmt: skip
                return rel(folder, d), f"{dirs[d]:,} images; sample_submission.csv names them"
    named = [d for d in candidates if "test" in rel(folder, d).lower()]
    if not named:
        raise KitError(f"found no folder of test images in {folder}; the image folders are "
                       f"{', '.join(rel(folder, d) for d in dirs)}")  # fmt: skip
    d = max(named, key=lambda d: dirs[d])
    return rel(folder, d), f"{dirs[d]:,} images"


def ext_of(seen: Contents, test: tuple) -> tuple[str, str]:
    """The extension sample_submission.csv's ids lack, if they lack one."""
    files = image_files(seen.folder / test[0])
    if seen.sample is None or not files:
        return "", "test ids are the file names"
    first = name_key(seen.sample.iloc[0, 0])
    if any(name_key(f.name) == first for f in files):
        return "", "ids name their files with the extension"
    return files[0].suffix, "added to each id to name its file"


def labelled_folder(seen: Contents, d: Path, layout: str, items, describe) -> dict:
    """detect()'s finding for a training folder `d` whose images carry their labels (a folder
    per class, or labels in the file names): `items` reads them, `describe(train_dir, files,
    labels)` says what was found in a line."""
    test = test_folder(seen, exclude=d)
    train_dir = rel(seen.folder, d)
    files, labels, _ = items(seen.folder, Recipe(name="new", slug="", train_dir=train_dir))
    return dict(layout=(layout, describe(train_dir, files, labels)), train_dir=(train_dir, None),
                test_dir=test, ext=ext_of(seen, test), _labels=labels, _train=files)  # fmt: skip
