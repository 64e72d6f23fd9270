"""The csv layout (Aerial Cactus, Cassava, Dog Breed, SIIM-ISIC, Plant Pathology, Planet...):
images in a folder and a CSV whose one column names them and another holds their labels (of
any kind in kit/data/label_kinds.py); a patient or subject column groups them."""

import re
from pathlib import Path

import pandas as pd

from kit.data.label_kinds import csv_labels, label_kind
from kit.data.readers.contents import (
    Contents,
    best_match,
    labelled_first,
    left_out,
    rel,
    test_folder,
)
from kit.data.readers.files import match_files, read_photos
from kit.data.readers.tables import column, has_rows, read_csv
from kit.errors import KitError
from kit.recipe import Recipe

NAME = "images with a CSV of id and label (train.csv: id,label)"
# A column naming whom an image belongs to, lower case without _ or spaces: patient_id, Subject.
GROUP = re.compile(r"(patient|subject|individual|person|group)(id)?")


def label_column(df: pd.DataFrame, others: list, sample) -> str | None:
    """The labels: the column sample_submission.csv names (target, never diagnosis beside it),
    else the one whose values are the sample's class columns, else one named label, target or
    class, else the first."""
    if sample is not None:
        named = [c for c in others if c in sample.columns[1:]]
        classes = set(sample.columns[1:])
        same = [c for c in others if len(classes) > 1 and set(df[c].dropna()) == classes]
        if named or same:
            return (named or same)[0]
    usual = [c for c in others if str(c).lower() in ("label", "labels", "class", "target")]
    return (usual or others or [None])[0]


def group_column(df: pd.DataFrame, id_col, label) -> tuple[str, str] | None:
    """A column naming whom each image belongs to (patient_id, subject), with its comment, when
    some have several images: their images must share a fold."""
    for c in df.columns:
        key = re.sub(r"[^a-z]", "", str(c).lower())
        if c in (id_col, label) or not GROUP.fullmatch(key) or df[c].isna().any():
            continue
        n = df[c].nunique()
        if n < len(df):
            most = df[c].value_counts().max()
            return c, f"{n:,} of them, up to {most} images each: each one's images share a fold"
    return None


def names_test_items(ids: pd.Series, sample) -> bool:
    """Whether `ids` are mostly the sample's ids: a list of the test images (test.csv)."""
    return sample is not None and ids.isin(set(sample.iloc[:, 0])).mean() >= 0.5


def detect(seen: Contents) -> dict | None:
    """A CSV whose one column names images in a folder, and another holds their labels."""
    candidates = labelled_first(seen)
    for path in candidates:
        df = seen.csvs[path]
        for id_col in df.columns:
            train, share, ext = best_match(df[id_col].tolist(), seen.index)
            if share < 0.9 or names_test_items(df[id_col], seen.sample):
                continue
            others = [c for c in df.columns if c != id_col]
            label = label_column(df, others, seen.sample)
            if label is None:
                continue
            kind = label_kind(df, others, label, seen.sample)
            label = kind["label_col"][0]
            test = test_folder(seen, exclude=train)
            group = group_column(df, id_col, label)
            n = seen.dirs[train]
            fields = dict(
                layout=(
                    "csv",
                    f"{path.name}: {id_col},{label}; {len(df):,} rows naming images "
                    f"in {rel(seen.folder, train)}/ ({n:,} there)",
                ),  # fmt: skip
                labels_csv=(path.name, left_out(seen, path, label, candidates)),
                id_col=(id_col, None),
                **kind,
                **({"group_col": group} if group else {}),
                train_dir=(rel(seen.folder, train), None),
                test_dir=test,
                ext=(
                    ext,
                    "ids name their files with the extension"
                    if not ext
                    else "added to each id to name its file",
                ),  # fmt: skip
            )
            r = Recipe(name="new", slug="", **{f: v for f, (v, _) in fields.items()})
            files, labels, _ = items(seen.folder, r)
            return fields | {"_labels": labels, "_train": files}
    return None


def items(folder: Path, r: Recipe) -> tuple[list[Path], list, list | None]:
    """Images and labels from a CSV of id and label: (files, labels, groups)."""
    path = folder / r.labels_csv
    text = (r.id_col, r.label_col, r.group_col)
    df = has_rows(read_csv(path, f"training labels ({r.id_col},{r.label_col})", text), path)
    ids = column(df, r.id_col, path, "id-col")
    labels = csv_labels(df, r, path)
    dup = ids[ids.duplicated()]
    if len(dup):
        raise KitError(f"{path.name} names image {dup.iloc[0]} more than once")
    files = match_files(folder / r.train_dir, ids.tolist(), r.ext, path.name, "train")
    groups = column(df, r.group_col, path, "group-col").tolist() if r.group_col else None
    return files, labels, groups


def read(folder: Path, r: Recipe, sample: pd.DataFrame | None) -> dict:
    return read_photos(folder, r, sample, items(folder, r))
