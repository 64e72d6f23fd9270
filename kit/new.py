"""`kit new`: inspect a downloaded competition folder and write a recipe for it.

Every choice the folder decides (layout, columns, folders, image size and colour, network,
metric, the submission's shape) becomes a flat field of the recipe with a comment saying what
was found, so that the file reads as the report of the inspection.
"""

import re
import statistics
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import pandas as pd
from PIL import Image

from kit.archives import unpack
from kit.errors import KitError
from kit.images import IMAGE_EXTS
from kit.layouts import image_files, natural_key, submission_shape
from kit.metrics import METRICS
from kit.recipe import Recipe, check, local_dir, recipe_files
from kit.submission import read_sample, sample_path, write_new

# The metric of competitions whose folder cannot tell it (their Evaluation pages say it).
KNOWN_METRICS = {
    "digit-recognizer": "accuracy",
    "Kannada-MNIST": "accuracy",
    "aerial-cactus-identification": "auc",
    "histopathologic-cancer-detection": "auc",
    "invasive-species-monitoring": "auc",
    "cassava-leaf-disease-classification": "accuracy",
    "dog-breed-identification": "logloss",
    "dogs-vs-cats-redux-kernels-edition": "logloss",
    "dogs-vs-cats": "accuracy",
    "plant-seedlings-classification": "f1_micro",
    "state-farm-distracted-driver-detection": "logloss",
    "aptos2019-blindness-detection": "qwk",
}
LAYOUT_NAMES = (
    "images with a CSV of id and label (train.csv: id,label)",
    "one folder per class (train/<class>/*.png)",
    "the label in the file name (train/cat.0.jpg)",
    "pixel CSVs (train.csv: label,pixel0,...)",
)
SMALL = 48  # pixels: up to this side, a small CNN from scratch at the images' own size
MAX_LOOK = 200  # images opened to learn sizes and colours


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


def tables(folder: Path) -> dict[Path, pd.DataFrame]:
    """The CSVs at the top of the folder, except the sample submission and solution."""
    skip = {sample_path(folder), folder / "solution.csv"}
    return {p: pd.read_csv(p, low_memory=False) for p in sorted(folder.glob("*.csv"))
            if p not in skip}  # fmt: skip


def rel(folder: Path, d: Path) -> str:
    return d.relative_to(folder).as_posix() or "."


def pixel_layout(folder, csvs, sample) -> dict | None:
    """A CSV of a label and a square number of pixel columns, and one of test pixels."""

    def pixel_cols(df):
        cols = [c for c in df.columns if re.fullmatch(r"pixel\d+", str(c))]
        return cols if len(cols) >= 64 and int(len(cols) ** 0.5) ** 2 == len(cols) else None

    found = {p: df for p, df in csvs.items() if pixel_cols(df)}
    train = [p for p, df in found.items() if len(df.columns) > len(pixel_cols(df))
             and "test" not in p.name.lower()]  # fmt: skip
    test = [p for p in found if "test" in p.name.lower()]
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
        labels_csv=(train[0].name, None),
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


def csv_layout(folder, csvs, sample, dirs, index) -> dict | None:
    """A CSV whose one column names images in a folder, and another holds their labels."""
    for path, df in csvs.items():
        for id_col in df.columns:
            train, share, ext = best_match(df[id_col].tolist(), index)
            if share < 0.9:
                continue
            others = [c for c in df.columns if c != id_col]
            wanted = [c for c in others if sample is not None and c in sample.columns]
            named = [c for c in others if str(c).lower() in ("label", "labels", "class", "target")]
            label = (wanted or named or others or [None])[0]
            if label is None:
                continue
            test = test_folder(folder, dirs, index, sample, exclude=train)
            n = dirs[train]
            return dict(
                layout=(
                    "csv",
                    f"{path.name}: {id_col},{label}; {len(df):,} rows naming images "
                    f"in {rel(folder, train)}/ ({n:,} there)",
                ),  # fmt: skip
                labels_csv=(path.name, None),
                id_col=(id_col, None),
                label_col=(label, None),
                train_dir=(rel(folder, train), None),
                test_dir=test,
                ext=(
                    ext,
                    "ids name their files with the extension"
                    if not ext
                    else "added to each id to name its file",
                ),  # fmt: skip
                _labels=df[label].tolist(),
                _train=[train / (f"{v}{ext}") for v in df[id_col].astype(str)],
            )
    return None


def test_folder(folder, dirs, index, sample, exclude) -> tuple[str, str]:
    """The image folder that holds sample_submission.csv's ids, else one named test."""
    candidates = {d: n for d, n in index.items() if d != exclude and exclude not in d.parents}
    if sample is not None:
        d, share, _ = best_match(sample.iloc[:, 0].tolist(), candidates)
        if d is not None and share >= 0.9:
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


def look(files: list[Path]) -> tuple[int, bool, str]:
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
        f"{c} {100 * n / total:.0f}%" for c, n in sorted(counts.items(), key=lambda kv: str(kv[0]))
    )


def model_fields(side: int, grey: bool, summary: str) -> dict:
    """The network and image size for images of `side` pixels."""
    if side <= SMALL:
        size = max(8, side)
        return dict(
            arch=("digitnet", f"{summary}: a small CNN from scratch at the images' own size"),
            pretrained=(False, None),
            size=(size, None),
            channels=(1 if grey else 3, "grey" if grey else "colour"),
            head_cycles=(0, "nothing pretrained to protect"),
            lr_mult=(1.0, "every layer starts from scratch"),
            flip=(not grey, "a mirrored glyph may be another class" if grey else None),
        )
    size = min(224, max(64, 32 * round(side / 32)))
    return dict(
        arch=("tf_efficientnet_lite0", f"{summary}: ImageNet weights that ship with the kit"),
        pretrained=(True, None),
        size=(
            size,
            f"median side {side} px" + (": resized once into the cache" if side > size else ""),
        ),  # fmt: skip
        channels=(3, "pretrained on RGB" + ("; grey images are repeated" if grey else "")),
        bs=(32 if size > 160 else 64, None),
    )


def choose_metric(metric: str | None, slug: str, sample, n_classes: int) -> tuple[str, str]:
    if metric:
        if metric not in METRICS:
            raise KitError(f"--metric must be one of {', '.join(METRICS)}")
        return metric, "given with --metric"
    if slug in KNOWN_METRICS:
        return KNOWN_METRICS[slug], f"the metric of {slug} on Kaggle"
    if sample is not None and len(sample.columns) > 2 and len(sample.columns) - 1 == n_classes:
        return "logloss", "one probability column per class: Kaggle scores these by log loss"
    if sys.stdin.isatty():
        answer = input(f"How is {slug} scored? ({', '.join(METRICS)}): ").strip()
        if answer in METRICS:
            return answer, "answered when asked"
    raise KitError(f"cannot tell how {slug} is scored; pass --metric with one of "
                   f"{', '.join(METRICS)} (see the competition's Evaluation page)")  # fmt: skip


def inspect_folder(folder: Path, metric=None, slug=None) -> dict:
    """Every field `kit new` writes, as {field: (value, comment)}."""
    if not folder.is_dir():
        raise KitError(f"{folder} is not a folder; pass the downloaded competition folder")
    if any(folder.glob("*.zip")) or any(folder.glob("*.7z")):
        unpack(folder)
    slug = slug or folder.resolve().name
    sample = read_sample(folder)
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
    labels = found.pop("_labels")
    if "_size" in found:
        side, grey = found.pop("_size")
        summary = f"{side}x{side} grey"
    else:
        side, grey, summary = look(found.pop("_train"))
    classes = sorted({str(v) for v in labels})
    metric, why = choose_metric(metric, slug, sample, len(classes))
    labelled = "label_col" if "label_col" in found else "train_dir"
    found[labelled] = (found[labelled][0], balance(labels))
    fields = {"slug": (slug, None), "metric": (metric, why), **found,
              **model_fields(side, grey, summary)}  # fmt: skip
    r = check(Recipe(name="new", **{k: v for k, (v, _) in fields.items()}))
    shape = submission_shape(r, sample, classes if sample is not None else None)
    where = "no sample_submission.csv"
    if sample is not None:
        cols = ",".join(map(str, sample.columns[:4])) + (",..." if len(sample.columns) > 4 else "")
        where = f"sample_submission.csv: {cols}"
    fields["sub_shape"] = (shape, where)
    description = f"{slug}: {len(labels):,} images {summary}, {balance(labels)}, {metric}"
    return {"description": (description, None), **fields}


RECIPE_FILE = '''"""{title}: written by `kit new {name}` on {day} from {folder}.

Each field says what `kit new` found; change any of them, or add any other Recipe field
(kit/recipe.py lists them). `kit run {name}` trains it.
"""

from kit.recipe import Recipe

DATA = {data!r}  # where the data was; `kit run` looks here after the usual places

RECIPE = Recipe(
    name={name!r},
{fields}
)
'''


def write_recipe(name: str, data, metric=None, slug=None) -> Path:
    """`kit new NAME --data DIR`: inspect DIR, write competitions/NAME.py; never overwrites."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise KitError(f"recipe name {name!r} must be a Python module name: lower case letters, "
                       "digits and _, not starting with a digit")  # fmt: skip
    dest = local_dir() / f"{name}.py"
    if dest.exists():
        raise KitError(f"{dest} already exists; nothing was overwritten (pick another name, or "
                       "edit that file)")  # fmt: skip
    folder = Path(data)
    fields = inspect_folder(folder, metric, slug)
    lines = []
    for key, (value, comment) in fields.items():
        line = f"    {key}={value!r},"
        lines.append(f"{line}  # {comment}" if comment else line)
    text = RECIPE_FILE.format(
        title=fields["slug"][0], name=name, day=date.today(), folder=folder.resolve(),
        data=str(folder.resolve()), fields="\n".join(lines),
    )  # fmt: skip
    shadows = name in recipe_files() and recipe_files()[name].parent != local_dir()
    write_new(text, dest)
    print(f"wrote {dest}: {fields['description'][0]}; {fields['layout'][0]} layout, "
          f"{fields['arch'][0]} at {fields['size'][0]} px")  # fmt: skip
    if shadows:
        print(f"note: it takes the place of the packaged recipe {name!r} in this folder")
    print(f"train it with `kit run {name}`")
    return dest
