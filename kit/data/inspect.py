"""What a downloaded competition folder holds, for `kit new`: its CSVs and image folders, the
layout they make (which CSV and columns, which folders), and the images' sizes and colours."""

import re
import statistics
from collections import Counter
from pathlib import Path

import pandas as pd
from PIL import Image

from kit.data.images import IMAGE_EXTS
from kit.data.layouts import class_order, image_files, natural_key
from kit.data.submission import sample_path
from kit.errors import KitError

LAYOUT_NAMES = (
    "images with a CSV of id and label (train.csv: id,label)",
    "one folder per class (train/<class>/*.png)",
    "the label in the file name (train/cat.0.jpg)",
    "pixel CSVs (train.csv: label,pixel0,...)",
)
MAX_LOOK = 200  # images opened to learn sizes and colours
PIXEL = re.compile(r"pixel\d+")
# Words in a CSV's name that say it holds no training labels (test.csv lists the test images).
NOT_TRAINING = ("test", "sample", "submission", "solution")
# A column naming whom an image belongs to, lower case without _ or spaces: patient_id, Subject.
GROUP = re.compile(r"(patient|subject|individual|person|group)(id)?")


def image_dirs(folder: Path, depth: int = 4) -> dict[Path, int]:
    """Every folder under `folder` (to `depth`) that holds images directly, with their count."""
    found = {}
    for d in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        if d.name.startswith(".") or len(d.relative_to(folder).parts) > depth:
            continue
        n = sum(1 for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if n:
            found[d] = n
    return found


def read_text(path: Path) -> pd.DataFrame:
    """A CSV with every column but pixel values read as text: 000123 stays 000123."""
    text = {c: str for c in pd.read_csv(path, nrows=0).columns if not PIXEL.fullmatch(str(c))}
    return pd.read_csv(path, low_memory=False, dtype=text, keep_default_na=False, na_values=[""])


def tables(folder: Path) -> dict[Path, pd.DataFrame]:
    """The CSVs at the top of the folder, except the sample submission and solution."""
    skip = {sample_path(folder), folder / "solution.csv"}
    return {p: read_text(p) for p in sorted(folder.glob("*.csv")) if p not in skip}


def labelled_first(csvs: dict, sample) -> list[Path]:
    """The CSVs that may hold the training labels, the likeliest first: train.csv, then those
    sharing a column with the sample, then train* and *label* names; never a test CSV (Kannada's
    Dig-MNIST.csv and others' extra.csv come after train.csv)."""

    def rank(p):
        stem = p.stem.lower()
        shared = sample is not None and bool(set(csvs[p].columns) & set(sample.columns))
        return stem != "train", not shared, not (stem.startswith("train") or "label" in stem)

    maybe = [p for p in csvs if not any(w in p.stem.lower() for w in NOT_TRAINING)]
    return sorted(maybe, key=lambda p: (*rank(p), p.name))


def left_out(csvs: dict, chosen: Path, label, candidates: list) -> str | None:
    """The comment on labels_csv: the other CSVs with the same labels, seen and not used."""
    others = [p.name for p in candidates if p != chosen and label in csvs[p].columns]
    return f"the training set; also labelled, left out: {', '.join(others)}" if others else None


def rel(folder: Path, d: Path) -> str:
    return d.relative_to(folder).as_posix() or "."


def pixel_layout(folder, csvs, sample) -> dict | None:
    """A CSV of a label and a square number of pixel columns, and one of test pixels."""

    def pixel_cols(df):
        cols = [c for c in df.columns if PIXEL.fullmatch(str(c))]
        return cols if len(cols) >= 64 and int(len(cols) ** 0.5) ** 2 == len(cols) else None

    found = {p: df for p, df in csvs.items() if pixel_cols(df)}
    train = [p for p in labelled_first(csvs, sample)
             if p in found and len(found[p].columns) > len(pixel_cols(found[p]))]  # fmt: skip
    test = [p for p in found if "test" in p.stem.lower()]
    if not train or not test:
        return None
    df, tdf = found[train[0]], found[test[0]]
    others = [c for c in df.columns if c not in pixel_cols(df)]
    label = "label" if "label" in others else others[0]
    ids = [c for c in tdf.columns if c not in pixel_cols(tdf)]
    side = int(len(pixel_cols(df)) ** 0.5)
    id_col = ids[0] if ids else (sample.columns[0] if sample is not None else "ImageId")
    return dict(
        layout=(
            "pixels",
            f"{train[0].name}: {label} and {len(pixel_cols(df))} pixels; "
            f"{len(df):,} images {side}x{side} grey",
        ),  # fmt: skip
        labels_csv=(train[0].name, left_out(csvs, train[0], label, train)),
        label_col=(label, None),
        test_csv=(test[0].name, f"{len(tdf):,} images"),
        id_col=(id_col, f"test ids: {'the ' + ids[0] + ' column' if ids else 'counted from 1'}"),
        _labels=df[label].tolist(),
        _size=(side, True),
    )


def name_index(dirs: dict) -> dict[Path, dict[str, str]]:
    """Per image folder: file names and stems, each mapped to the file's extension."""
    index = {}
    for d in dirs:
        names = {}
        for f in image_files(d):
            names[f.name] = ""
            names.setdefault(f.stem, f.suffix)
        index[d] = names
    return index


def best_match(values: list, index: dict) -> tuple[Path | None, float, str]:
    """The image folder that names the most `values`, the share it names, and the extension
    to add to them ("" when they carry their own)."""
    best = (None, 0.0, "")
    values = [str(v) for v in values]
    for d, names in index.items():
        hits = [names[v] for v in values if v in names]
        share = len(hits) / max(len(values), 1)
        if share > best[1]:
            best = (d, share, Counter(hits).most_common(1)[0][0])
    return best


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


def csv_layout(folder, csvs, sample, dirs, index) -> dict | None:
    """A CSV whose one column names images in a folder, and another holds their labels; a
    patient or subject column groups them."""
    candidates = labelled_first(csvs, sample)
    for path in candidates:
        df = csvs[path]
        for id_col in df.columns:
            train, share, ext = best_match(df[id_col].tolist(), index)
            if share < 0.9 or names_test_items(df[id_col], sample):
                continue
            others = [c for c in df.columns if c != id_col]
            label = label_column(df, others, sample)
            if label is None:
                continue
            kind = label_fields(df, others, label, sample)
            label = kind["label_col"][0]
            test = test_folder(folder, dirs, index, sample, exclude=train)
            group = group_column(df, id_col, label)
            n = dirs[train]
            return dict(
                layout=(
                    "csv",
                    f"{path.name}: {id_col},{label}; {len(df):,} rows naming images "
                    f"in {rel(folder, train)}/ ({n:,} there)",
                ),  # fmt: skip
                labels_csv=(path.name, left_out(csvs, path, label, candidates)),
                id_col=(id_col, None),
                **kind,
                **({"group_col": group} if group else {}),
                train_dir=(rel(folder, train), None),
                test_dir=test,
                ext=(
                    ext,
                    "ids name their files with the extension"
                    if not ext
                    else "added to each id to name its file",
                ),  # fmt: skip
                _train=[train / (f"{v}{ext}") for v in df[id_col].astype(str)],
            )
    return None


def one_hot_columns(df: pd.DataFrame, others: list, sample) -> list | None:
    """The labels as one 0/1 column per class (Plant Pathology: healthy, multiple_diseases, rust,
    scab): sample_submission.csv's value columns, when it has two or more and each is a column
    of 0s and 1s here."""
    if sample is None or len(sample.columns) < 3:
        return None
    cols = [c for c in sample.columns[1:] if c in others]
    if len(cols) < len(sample.columns) - 1:
        return None
    zero_one = [pd.to_numeric(df[c], errors="coerce").isin([0, 1]).all() for c in cols]  # text too
    return cols if all(zero_one) else None


def tag_lists(values: list) -> list | None:
    """Each row's space-separated tags (Planet: `haze primary water`) when the column holds tags:
    rows of several words that recombine a smaller vocabulary. Class names with spaces (`st.
    bernard`) are not tags: their words do not recombine."""
    rows = [str(v).split() for v in values]
    if not any(len(r) > 1 for r in rows):
        return None
    combos = {frozenset(r) for r in rows}
    words = Counter(w for c in combos for w in c)  # in how many combinations each word is
    recombine = sum(n >= 2 for n in words.values()) >= 2 / 3 * len(words)
    return rows if len(words) < len(combos) or recombine else None


def label_fields(df: pd.DataFrame, others: list, label, sample) -> dict:
    """label_col as found (one column, or several 0/1 columns comma-separated), multi_label when
    rows hold several labels, and `_labels`: each row's class, or (multi-label) its list."""
    flags = one_hot_columns(df, others, sample)
    if flags:
        ones = df[flags].apply(pd.to_numeric).to_numpy().astype(int)
        rows = [[c for c, v in zip(flags, row) if v] for row in ones]
        col = (",".join(map(str, flags)), "one 0/1 column per class")
        several = int((ones.sum(1) > 1).sum())
        if several:
            return dict(label_col=col, multi_label=(True, f"{several:,} rows hold several 1s"),
                        _labels=rows)  # fmt: skip
        return dict(label_col=col, _labels=[r[0] for r in rows if r])
    tags = tag_lists(df[label].tolist())
    if tags:
        n = len({t for r in tags for t in r})
        combos = len({frozenset(r) for r in tags})
        note = f"space-separated tags: {n} tags in {combos} combinations"
        return dict(label_col=(label, None), multi_label=(True, note), _labels=tags)
    return dict(label_col=(label, None), _labels=df[label].tolist())


def ranked_labels(sample, multi_label: bool) -> int:
    """k, when sample_submission.csv's one value column lists k > 1 labels per row for a task of
    one label per image (Humpback Whale: `new_whale w_1287fbc w_98baff9 ...`): the k likeliest
    labels are submitted, best first. 0 otherwise."""
    if multi_label or sample is None or len(sample.columns) != 2 or not len(sample):
        return 0
    k = len(str(sample.iloc[0, 1]).split())
    return k if k > 1 else 0


def test_folder(folder, dirs, index, sample, exclude) -> tuple[str, str]:
    """The image folder that holds sample_submission.csv's ids (the training folder itself when
    train and test images share one, as Plant Pathology's images/ does), else one named test."""
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


def folders_layout(folder, sample, dirs, index) -> dict | None:
    """A folder whose subfolders (two or more) each hold images of one class."""
    parents = Counter(d.parent for d in dirs if d != folder)
    for parent, n in parents.most_common():
        if n < 2 or parent == folder or "test" in parent.name.lower():
            continue  # class folders sit in a training folder, not beside train/ and test/
        classes = sorted((d for d in dirs if d.parent == parent), key=lambda d: natural_key(d.name))
        files = [f for d in classes for f in image_files(d)]
        test = test_folder(folder, dirs, index, sample, exclude=parent)
        return dict(
            layout=(
                "folders",
                f"{rel(folder, parent)}/ holds {len(classes)} class folders, {len(files):,} images",
            ),  # fmt: skip
            train_dir=(rel(folder, parent), None),
            test_dir=test,
            ext=ext_of(sample, test, folder),
            _labels=[d.name for d in classes for _ in image_files(d)],
            _train=files,
        )
    return None


def filenames_layout(folder, sample, dirs, index) -> dict | None:
    """A folder of images named <label>.<n>.<ext>, with two or more labels."""
    for d, n in sorted(dirs.items(), key=lambda kv: -kv[1]):
        files = image_files(d)
        labels = [f.name.split(".")[0] for f in files if f.name.count(".") >= 2]
        if len(labels) < 0.9 * len(files) or not 2 <= len(set(labels)) <= len(files) / 2:
            continue
        if all(label.isdigit() for label in set(labels)):
            continue
        test = test_folder(folder, dirs, index, sample, exclude=d)
        return dict(
            layout=("filenames", f"{rel(folder, d)}/: {n:,} images named <label>.<n>.<ext>"),
            train_dir=(rel(folder, d), None),
            test_dir=test,
            ext=ext_of(sample, test, folder),
            _labels=[f.name.split(".")[0] for f in files],
            _train=files,
        )
    return None


def ext_of(sample, test, folder) -> tuple[str, str]:
    """The extension sample_submission.csv's ids lack, if they lack one."""
    files = image_files(folder / test[0])
    if sample is None or not files:
        return "", "test ids are the file names"
    first = str(sample.iloc[0, 0])
    if any(f.name == first for f in files):
        return "", "ids name their files with the extension"
    return files[0].suffix, "added to each id to name its file"


def measure_images(files: list[Path]) -> tuple[int, bool, str]:
    """The median side of up to MAX_LOOK images, whether all are grey, and a summary."""
    step = max(1, len(files) // MAX_LOOK)
    sides, modes, sizes = [], Counter(), Counter()
    for f in files[::step][:MAX_LOOK]:
        try:
            with Image.open(f) as im:
                sides.append((im.width + im.height) / 2)
                modes[im.mode] += 1
                sizes[f"{im.width}x{im.height}"] += 1
        except OSError:
            continue
    if not sides:
        raise KitError(f"none of the images looked at can be read, e.g. {files[0]}")
    grey = all(m in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") for m in modes)
    common = sizes.most_common(1)[0][0]
    kinds = "/".join(m for m, _ in modes.most_common(3))
    return round(statistics.median(sides)), grey, f"{common} {kinds}"


def balance(labels: list) -> str:
    counts = Counter(labels)
    if len(counts) > 6:
        top = counts.most_common()
        return f"{len(counts)} classes, {top[-1][1]}-{top[0][1]} images each"
    total = sum(counts.values())
    return f"{len(counts)} classes, " + " / ".join(
        f"{c} {100 * counts[c] / total:.0f}%" for c in class_order(counts)
    )


def find_layout(folder: Path, sample) -> dict:
    """The first layout that fits the folder, as {field: (value, comment)}, plus what the
    recipe's other choices need: `_labels` (the training labels) and `_train` (the training
    images) or `_size` (the side and greyness of pixel rows); a KitError naming what the folder
    holds when none fits."""
    csvs, dirs = tables(folder), image_dirs(folder)
    index = name_index(dirs)  # every image folder listed once, for every layout tried
    found = (
        pixel_layout(folder, csvs, sample)
        or csv_layout(folder, csvs, sample, dirs, index)
        or folders_layout(folder, sample, dirs, index)
        or filenames_layout(folder, sample, dirs, index)
    )
    if found is None:
        what = [f"CSV files {', '.join(p.name for p in csvs) or 'none'}",
                "image folders " + (", ".join(f"{rel(folder, d)}/ ({n})" for d, n in dirs.items())
                                    or "none")]  # fmt: skip
        raise KitError(f"cannot recognise the layout of {folder}: found {'; '.join(what)}. The "
                       f"layouts known: {'; '.join(LAYOUT_NAMES)}")  # fmt: skip
    return found
