"""`kit new`: inspect a downloaded competition folder and write a recipe for it.

Every choice the folder decides (layout, columns, folders, image size and colour, network,
metric, the submission's shape) becomes a flat field of the recipe with a comment saying what
was found, so that the file reads as the report of the inspection.
"""

import re
import sys
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

from kit.data.archives import unpack
from kit.data.inspect import find_layout
from kit.data.label_kinds import ranked_labels
from kit.data.photos import opened
from kit.data.readers.files import held_out_items
from kit.data.submission import as_sample_writes, read_sample, sample_path, submission_shape
from kit.data.summary import balance, measure_images
from kit.errors import KitError
from kit.evaluate.metrics import METRICS, TOP_K
from kit.files import write_new
from kit.recipe import Recipe, check, is_recipe, local_dir, module_name, recipe_file

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
    "siim-isic-melanoma-classification": "auc",
    "plant-pathology-2020-fgvc7": "mauc",
    "planet-understanding-the-amazon-from-space": "f2",
    "humpback-whale-identification": "map5",
    "quickdraw-doodle-recognition": "map3",
}
SMALL = 48  # pixels: up to this side, a small CNN from scratch at the images' own size, unless
SCRATCH_FROM = 5000  # small colour photos are fewer: ImageNet weights upscaled (a guess)
# px for ImageNet weights on small photos: on 150 photos of 25 px (benchmarks/augment.py, three
# seeds) held-out AUC 0.936 at 64 px, 0.960 at 96 and 0.989 at 128 (every seed), in 1.9x 96's time
UPSCALED = 128
# the least px for photos and ImageNet weights: 600 photos of 64 px at 96 (benchmarks/augment.py,
# three seeds): 9 breeds log loss 0.599 -> 0.143 (every seed), transfer AUC 0.973 -> 0.9995 (2
# of 3, one tied), in 1.7-2.3x the time; cut to the 64 px run's time it did not win
LEAST = 96
BIGGER = 320  # px kit new proposes (in the recipe's comment) for photos of twice 224 or more
LOOK = 200  # images looked at for their colours and orientation; under 100 cannot tell no up
TWO_TONE = 0.1  # colours off the line between an image's ink and background, as a share
TURNED_ALIKE = 2.0  # mean image vs itself turned: squared z per pixel, about 1 if alike


def looks(files: list[Path]) -> tuple[bool, bool]:
    """(two-tone, turn-free) for up to LOOK of the images, at 16 px: two-tone where an image's
    colours lie on one line (ink on a background: a glyph, not a photo); turn-free where the mean
    image is the same turned 90 degrees and upside down, to within its noise (aerial, microscopy,
    tiles: no up; faces, scenes and glyphs have one)."""
    ims = []
    for f in files[:: max(1, len(files) // LOOK)][:LOOK]:
        try:
            with opened(f) as im:
                ims.append(np.asarray(im.convert("RGB").resize((16, 16)), dtype=np.float64))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            continue
    if len(ims) < 8:
        return False, False
    x = np.stack(ims) / 255
    pixels = x.reshape(len(x), -1, 3)
    sv = np.linalg.svd(pixels - pixels.mean(1, keepdims=True), compute_uv=False)
    two_tone = np.median(sv[:, 1] / np.maximum(sv[:, 0], 1e-9)) < TWO_TONE
    grey = x.mean(3)
    z2 = [(d.mean(0) ** 2 / (d.var(0, ddof=1) / len(d) + 1e-8)).mean()
          for d in (grey - np.rot90(grey, 1, (1, 2)), grey - grey[:, ::-1])]  # fmt: skip
    return bool(two_tone), bool(len(x) >= LOOK // 2 and max(z2) < TURNED_ALIKE)


def model_fields(side: int, grey: bool, summary: str, n: int = 0, look=(True, False)) -> dict:
    """The network and image size for `n` images of `side` pixels that `look` (two-tone,
    turn-free) as looks() found them."""
    two_tone, turn_free = look
    orientation = {"dihedral": (True, "they look alike turned any way: no up")} if turn_free else {}
    if side <= SMALL and (grey or two_tone or n >= SCRATCH_FROM):
        size = max(8, side)
        return (
            dict(
                arch=(
                    "digitnet",
                    f"{summary}, {why_scratch(grey, two_tone, n)}: a small CNN from "
                    "scratch at the images' own size",
                ),  # fmt: skip
                pretrained=(False, None),
                size=(size, None),
                channels=(1 if grey else 3, "grey" if grey else "colour"),
                head_cycles=(0, "nothing pretrained to protect"),
                lr_mult=(1.0, "every layer starts from scratch"),
                flip=(
                    not (grey or two_tone),
                    "a mirrored glyph may be another class" if grey or two_tone else None,
                ),  # fmt: skip
            )
            | orientation
        )
    size = min(224, max(LEAST, 32 * round(side / 32)))
    why = f"median side {side} px" + (
        ": resized once into the cache"
        if side > size
        else ", upscaled: ImageNet weights see best near the size they learned at"
        if side < size
        else ""
    )
    if side >= 2 * size:  # a proposal only: the house size stays the size the weights learned at
        more = (BIGGER / size) ** 2
        why += (f"; photos at least twice {size} px may keep more of their detail at --size "
                f"{BIGGER} ({more:.1f}x the pixels per image; not measured)")  # fmt: skip
    if side <= SMALL:
        size = UPSCALED
        why = (f"median side {side} px, upscaled: {n:,} small photos are too few to learn from "
               "scratch, and ImageNet weights see best near the size they learned at")  # fmt: skip
    return (
        dict(
            arch=("tf_efficientnet_lite0", f"{summary}: ImageNet weights that ship with the kit"),
            pretrained=(True, None),
            size=(size, why),
            channels=(3, "pretrained on RGB" + ("; grey images are repeated" if grey else "")),
            bs=(32 if size > 160 else 64, None),
        )
        | orientation
    )


def why_scratch(grey: bool, two_tone: bool, n: int) -> str:
    if grey or two_tone:
        return "glyphs" if not grey else "grey"
    return f"{n:,} images, enough to learn from"


def choose_metric(
    metric: str | None, slug: str, sample, n_classes: int, k: int = 0, multi_label: bool = False
) -> tuple[str, str]:
    """The metric: given, known for the slug, else read off the sample (k ranked labels per row,
    one probability column per class or tag); else asked."""
    if metric:
        if metric not in METRICS:
            raise KitError(f"--metric must be one of {', '.join(METRICS)}")
        return metric, "given with --metric"
    if slug in KNOWN_METRICS:
        return KNOWN_METRICS[slug], f"the metric of {slug} on Kaggle"
    if k and f"map{k}" in METRICS:
        return f"map{k}", f"sample_submission.csv lists {k} labels per image: MAP@{k} scores them"
    if sample is not None and len(sample.columns) > 2 and len(sample.columns) - 1 == n_classes:
        if multi_label:
            return "mauc", "one probability column per tag: mean column-wise ROC AUC"
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
    found = find_layout(folder, sample)
    rows = found.pop("_labels")  # each row's class, or (multi-label) its list of tags
    multi = found.get("multi_label", (False,))[0]
    labels = [t for row in rows for t in row] if multi else rows
    look = (True, False)  # pixel rows: glyphs
    if "_size" in found:
        side, grey = found.pop("_size")
        summary = f"{side}x{side} grey"
    else:
        files = found.pop("_train")
        side, grey, summary = measure_images(files)
        look = looks(files)
    classes = sorted({str(v) for v in labels})
    if len(classes) < 2:
        raise KitError(f"the training labels hold only one class ({', '.join(classes)}); "
                       "nothing to learn: check the labels column or folders")  # fmt: skip
    k = ranked_labels(sample, multi, classes)
    metric, why = choose_metric(metric, slug, sample, len(classes), k, multi)
    labelled = "label_col" if "label_col" in found else "train_dir"
    found_value, found_note = found[labelled]
    found[labelled] = (found_value, (f"{found_note}: " if found_note else "") + balance(labels))
    fields = {"slug": (slug, None), "metric": (metric, why), **found,
              **model_fields(side, grey, summary, len(rows), look)}  # fmt: skip
    if k:  # the sample lists k labels per image: the k likeliest, whatever the metric
        fields |= {"sub_shape": ("top_k", None), "top_k": (k, None)}
    r = check(Recipe(name="new", **{f: v for f, (v, _) in fields.items()}))
    if r.layout != "pixels":  # every test image there, as kit run will read them
        held_out_items(folder, r, sample)
    if not r.multi_label:  # 1.0 written 1 where the sample writes whole numbers
        classes = sorted(set(as_sample_writes(classes, sample, submission_shape(r, sample, None))))
    shape = submission_shape(r, sample, classes if sample is not None else None)
    where = "no sample_submission.csv"
    if sample is not None:
        cols = ",".join(map(str, sample.columns[:4])) + (",..." if len(sample.columns) > 4 else "")
        where = f"{sample_path(folder).name}: {cols}"
    fields["sub_shape"] = (shape, where)
    if shape == "top_k":  # as many as the sample lists, else as many as the metric scores
        note = "as sample_submission.csv lists them" if k else f"as {metric} scores them"
        fields["top_k"] = (k or TOP_K.get(metric, r.top_k), f"labels per image, best first, {note}")
    description = f"{slug}: {len(rows):,} images {summary}, {balance(labels)}, {metric}"
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
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise KitError(f"recipe name {name!r} must be letters, digits, - and _, starting with a "
                       "letter or digit; a Kaggle slug such as dog-breed-identification "
                       "works")  # fmt: skip
    dest = local_dir() / f"{module_name(name)}.py"
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
    shadows = is_recipe(name) and recipe_file(name).parent != local_dir()
    write_new(text, dest)
    print(f"wrote {dest}: {fields['description'][0]}; {fields['layout'][0]} layout, "
          f"{fields['arch'][0]} at {fields['size'][0]} px")  # fmt: skip
    if shadows:
        print(f"note: it takes the place of the packaged recipe {name!r} in this folder")
    print(f"train it with `kit run {name}`")
    return dest
