"""The recipe: one competition's settings as plain data, and how to find a recipe by name."""

import dataclasses
import difflib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from kit.errors import KitError
from kit.paths import output_root


def field(default=dataclasses.MISSING, help: str = ""):
    """A Recipe field: its default, and the line of help that documents it (`kit run --help`)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class Recipe:
    """All a run needs to know; a competition sets only what differs from the house method."""

    name: str = field(help="the CLI name: competitions/<name>.py")
    slug: str = field(help="the Kaggle competition slug")
    description: str = field("", "one line for `kit list`")
    metric: str = field(
        "accuracy",
        "accuracy | auc | logloss | f1_macro | f1_micro | qwk | mauc | f2 | f1_samples | map5 | "
        "map3",
    )
    # the competition folder (kit/data/layouts.py reads it; `kit new` writes what it found)
    layout: str = field(
        "csv", "csv (images + labels CSV) | folders (one per class) | filenames | pixels"
    )
    labels_csv: str = field("train.csv", "the training labels (pixels: labels and pixels)")
    id_col: str = field("id", "the labels CSV's image id column (pixels: test.csv's id column)")
    label_col: str = field(
        "label", "the labels CSV's class column; several, comma-separated: one 0/1 column per class"
    )
    # Several labels per image (Planet): a sigmoid per tag and binary cross-entropy; label_col
    # holds space-separated tags, or names 0/1 columns where a row may hold several ones.
    multi_label: bool = field(
        False, "several labels per image: label_col holds space-separated tags (or 0/1 columns)"
    )
    group_col: str = field("", "a labels CSV column grouping images that must share a fold")
    train_dir: str = field("train", "the training images (folders: one subfolder per class)")
    test_dir: str = field("test", "the test images")
    test_csv: str = field("test.csv", "pixels: the test images' pixels")
    ext: str = field("", "added to an id to name its image file, when ids have no extension")
    channels: int = field(3, "3 reads images as RGB, 1 as grey")
    sub_shape: str = field(
        "auto",
        "auto | label | probability | probabilities (one column per class) | tags (multi-label) "
        "| top_k (the top_k likeliest labels)",
    )
    top_k: int = field(5, "top_k submissions: labels per image, best first (MAP@k scores k)")
    positive: str = field(
        "", "probability: the class whose probability is submitted (default: last)"
    )
    # model
    arch: str = field("resnet18", "a kit network (kit/train/models.py) or any timm model name")
    pretrained: bool = field(
        True, "start from ImageNet weights (found offline first, see --weights)"
    )
    size: int = field(224, "pixels; images are resized (and cached) to size x size")
    # progressive resizing: most epochs at a smaller size, then a final cycle at --size, where the
    # model is validated and predicts (kit/train/plan.py; measured in benchmarks/augment.py)
    start_size: int = field(
        0,
        "train at this smaller size first (the cached images shrunk on the device), then a final "
        "cycle of --final-epochs at --size (0: off)",
    )
    final_epochs: int = field(2, "with --start-size: epochs of the final cycle at --size")
    # data
    valid_pct: float = field(0.2, "stratified validation split, seeded by fold_seed")
    # The folds belong to the data, not the run: runs that differ in --seed, arch or size share
    # them, so they blend. A folds.csv (columns item, fold) in the data folder wins over fold_seed.
    fold_seed: int = field(
        0, "seeds the folds and the validation split (a folds.csv in the data wins)"
    )
    bs: int = field(64, "images per batch")
    # a few hundred digits at bs 128 made one step an epoch, 7 in all: from scratch they learnt
    # nothing (benchmarks/batches.py); a pretrained body's finder read rates off on small batches
    min_batches: int = field(
        0,
        "batches an epoch makes at least, the batch shrinking to 8 at least (0: 16 from "
        "scratch, 1 for pretrained weights)",
    )
    # augmentation, applied to whole batches as tensors
    rotate: float = field(10.0, "max degrees either way")
    shift: float = field(0.0, "max translation, as a fraction of the image side")
    zoom: float = field(1.1, "scale drawn from [1/zoom, zoom]")
    flip: bool = field(True, "horizontal flips")
    lighting: float = field(0.2, "max brightness and contrast change")
    pad_mode: str = field(
        "reflection", "how augmentation fills the border: reflection | zeros | border"
    )
    dihedral: bool = field(False, "flips both ways and 90-degree turns (for data with no up)")
    crop_scale: float = field(0.0, "random resized crop: the least share of the area kept (0: off)")
    crop_ratio: float = field(1.33, "random resized crop: aspect ratio drawn from [1/ratio, ratio]")
    erase: float = field(0.0, "random erasing: share of images given a noise rectangle (0: off)")
    saturation: float = field(0.0, "max saturation change either way, colour images (0: off)")
    hue: float = field(0.0, "max hue turn either way, a fraction of the colour wheel (0: off)")
    auto_augment: str = field("", "torchvision's trivial (TrivialAugment) or rand (RandAugment)")
    # imbalance: auto weights the classes where the metric weighs each class alike (learner.py)
    balance: str = field("auto", "auto | weights (classes in inverse proportion) | none")
    # big networks on small devices: each off by default (kit/train/learner.py)
    accumulate: int = field(1, "batches per optimizer step: an effective batch of bs x accumulate")
    clip: float = field(0.0, "the largest gradient norm a step takes; larger ones scaled (0: off)")
    drop_path: float = field(0.0, "timm networks' drop_path_rate: stochastic depth (0: off)")
    # a pretrained body's lowest layers need the least change: a rate per layer, not three groups
    layer_decay: float = field(
        0.0, "each layer learns this times the rate of the layer above (0: --lr-mult's groups)"
    )
    # squash distorts a wide photo; pad keeps all of it, crop its centre square (kit/data/photos.py)
    resize: str = field("squash", "photos to size x size: squash | pad (black borders) | crop")
    # the house schedule: SGDR on the head (body frozen), unfreeze, SGDR on everything
    lr: float = field(
        0.0, "max learning rate; 0 takes the rate lr_rule reads from the finder's curve"
    )
    # auto: halfway from scratch, minimum for pretrained weights (README; kit/train/finder.py)
    lr_rule: str = field(
        "auto", "the finder's curve to a rate: auto|halfway|valley|slide|minimum|steep"
    )
    # unfrozen, the first layer group's rate: read off a second finder run, at least lr/lr_mult;
    # off, fastai's fine_tune rates (the head's half, and a hundredth of that): one finder run less.
    # On by default, measured (benchmarks/equal_time.py's 3,000 PNGs at 64 px, --head-cycles 1):
    # off saved 17 s of 171 and cost held-out AUC 0.9963 -> 0.9613; the run read a body rate only
    # 1.0-9.5x below the top on five sets, where fine_tune's is 100x below
    refind: bool = field(
        True, "run the finder again once the body unfreezes (off: fastai's fine_tune rates)"
    )
    # a pretrained body's first layer group at a fixed rate (at most the top's) instead of the
    # second finder's reading: no second finder run. Off by default, measured
    # (benchmarks/body_rate.py, 3 seeds): 2e-3 took 0.55-0.91x the time and raised AUC on 300
    # and 600 transfer photos (+5.3, +1.4 points) but lost on average on the breeds' log loss
    # and the invasive sample
    body_lr: float = field(
        0.0, "the first layer group's rate once the body unfreezes (0: the second finder's)"
    )
    head_cycles: int = field(1, "SGDR cycles with the body frozen (0 skips the stage)")
    head_cycle_len: int = field(1, "epochs in each head cycle (the head's cycles do not grow)")
    cycles: int = field(3, "SGDR cycles with everything trainable")
    cycle_len: int = field(1, "epochs in the first cycle")
    cycle_mult: int = field(2, "each cycle is this many times longer than the last")
    # --cycles and --head-cycles are the most: a stage stops at the end of a cycle that raised the
    # validation score by no more than the score's noise on the validation set (kit/train/plan.py)
    exact_cycles: bool = field(
        False, "train every cycle of --head-cycles and --cycles, whatever each cycle gained"
    )
    # Off by default, measured (benchmarks/precise_bn.py): on 300 photos of nine breeds (3 batches
    # an epoch) held-out log loss 0.62 against 0.89, better at 3 seeds of 3; on 300 and 600
    # transfer photos (7 and 15 batches) AUC lower on average, by up to 13 points at a seed
    precise_bn: bool = field(
        False, "recompute batch-norm statistics over the training data before each validation"
    )
    lr_mult: float = field(100.0, "discriminative rates: the first layer group learns lr/lr_mult")
    wd: float = field(0.01, "decoupled weight decay (AdamW)")
    label_smoothing: float = field(0.0, "the share of each target spread over all classes (0: off)")
    mixup: float = field(0.0, "MixUp's alpha: train on blends of image pairs and labels (0: off)")
    cutmix: float = field(0.0, "CutMix's alpha: paste a patch of one image into another (0: off)")
    ema: float = field(0.0, "decay of a moving average of the weights, validated and kept (0: off)")
    patience: int = field(0, "early stopping after this many epochs without improvement (0: off)")
    min_delta: float = field(0.0, "the least gain in the metric that counts as an improvement")
    snapshots: bool = field(
        False, "snapshot each cycle of the last stage; try their ensemble and SWA"
    )
    folds: int = field(
        0, "K-fold cross-validation: K models, out-of-fold predictions (0: one split)"
    )
    tta: bool = field(True, "also predict with test-time augmentation and report both scores")
    precision: str = field(
        "auto",
        "auto | fp32 | bf16 | fp16; auto is bf16 on GPUs with bf16 units (Ampere on), else fp16 "
        "with a loss scaler, and fp32 on CPU; bf16 falls back where the hardware lacks it",
    )
    channels_last: bool = field(True, "NHWC memory layout: faster convolutions on CPU and GPU")
    sync_bn: bool = field(
        False, "--nproc on GPUs: batch-norm statistics over every process's batch"
    )
    seed: int = field(42, "seeds the new weights, the batch order and augmentation (not the folds)")
    log: str = field(
        "", "tensorboard: also log losses, rates and metrics to each model's tensorboard/ folder"
    )
    time_limit: float = field(
        0.0, "minutes for the run; cycles, finder and TTA cut to fit (0: none)"
    )
    # pseudo-labels (kit/pseudo.py): fold k also trains on the test images that fold k's own
    # model in RUN labelled confidently, never the whole ensemble's labels (those would leak fold
    # k's validation labels); hard labels, so every loss and trick stays as it is
    pseudo_label: str = field(
        "",
        "a finished k-fold run (or ensemble) of this recipe: fold k adds the test images its "
        "fold-k model labelled confidently; the run takes that run's folds",
    )
    # 0.9 is not measured yet: choose it on the out-of-fold score (benchmarks/pseudo.py), never
    # on the test set; an underconfident model (few labels, from scratch) may pass none
    pseudo_threshold: float = field(
        0.9, "--pseudo-label: the least confidence (top class's probability) of a test image used"
    )
    # distillation (kit/distill.py, `kit distill NAME RUN`): one student learns RUN's out-of-fold
    # probabilities, validated on the held-out split's true labels
    distill: str = field(
        "",
        "a finished k-fold run (or ensemble) of this recipe: train one student on its out-of-fold "
        "probabilities as soft targets",
    )
    # 0.5: the true class keeps at least half of every target, so no known-wrong label is taught
    distill_alpha: float = field(
        0.5, "--distill: the true label's share of a training image's target (0: RUN's alone)"
    )
    # the test images have no labels to leak, and they are the images the student is asked about
    distill_test: bool = field(
        True, "--distill: also train on the test images, RUN's test probabilities their targets"
    )


LR_RULES = ("auto", "halfway", "valley", "slide", "minimum", "steep")  # kit/train/finder.py
# kit/evaluate/metrics.py
METRICS = ("accuracy", "auc", "logloss", "f1_macro", "f1_micro", "qwk", "mauc", "f2", "f1_samples",
           "map5", "map3")  # fmt: skip
MULTI_LABEL_METRICS = ("f2", "f1_samples", "mauc")  # those that score several labels per image
LAYOUTS = ("csv", "folders", "filenames", "pixels")  # kit/data/layouts.py
SHAPES = ("auto", "label", "probability", "probabilities", "tags", "top_k")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PAD_MODES = ("reflection", "zeros", "border")
AUTO_AUGMENTS = ("", "trivial", "rand")  # kit/data/augment.py
RESIZES = ("squash", "pad", "crop")  # kit/data/photos.py


def field_help() -> dict[str, str]:
    """Each field's help, as its definition above gives it: the help text of its CLI flag."""
    return {f.name: f.metadata["help"] for f in dataclasses.fields(Recipe)}


def recipe_fields() -> list[dataclasses.Field]:
    """The fields a user may override (all but the recipe's identity)."""
    return [f for f in dataclasses.fields(Recipe) if f.name not in ("name", "slug", "description")]


def override(recipe: Recipe, **changes) -> Recipe:
    """A copy of `recipe` with `changes` applied (None means keep), checked."""
    changes = {k: v for k, v in changes.items() if v is not None}
    known = {f.name for f in recipe_fields()}
    unknown = sorted(set(changes) - known)
    if unknown:
        hint = difflib.get_close_matches(unknown[0], known, n=1)
        raise KitError(
            f"unknown recipe field {unknown[0]!r}"
            + (
                f"; did you mean {hint[0]!r}?"
                if hint
                else f"; the fields are {', '.join(sorted(known))}"
            )
        )
    return check(dataclasses.replace(recipe, **changes))


def saved_recipe(values: dict) -> Recipe:
    """The recipe a run resolved and saved (recipe.json); a field the run predates keeps its
    default."""
    known = {f.name for f in dataclasses.fields(Recipe)}
    return Recipe(**{k: v for k, v in values.items() if k in known})


def check(r: Recipe) -> Recipe:
    """Raise KitError naming the first field whose value cannot work."""
    rules = [
        (r.metric in METRICS, "metric", f"one of {', '.join(METRICS)}"),
        (r.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}"),
        (r.pad_mode in PAD_MODES, "pad_mode", f"one of {', '.join(PAD_MODES)}"),
        (r.layout in LAYOUTS, "layout", f"one of {', '.join(LAYOUTS)}"),
        (r.sub_shape in SHAPES, "sub_shape", f"one of {', '.join(SHAPES)}"),
        (
            not r.multi_label or r.metric in MULTI_LABEL_METRICS,
            "metric",
            f"one of {', '.join(MULTI_LABEL_METRICS)} with --multi-label",
        ),
        (
            r.multi_label or r.metric not in ("f2", "f1_samples"),
            "metric",
            "a single-label metric without --multi-label (f2 and f1_samples score several labels "
            "per image)",
        ),
        (not r.multi_label or r.layout == "csv", "layout", "csv with --multi-label (a labels CSV)"),
        (r.top_k >= 1, "top_k", "at least 1"),
        (r.channels in (1, 3), "channels", "1 (grey) or 3 (RGB)"),
        (r.size >= 8, "size", "at least 8 pixels"),
        (
            r.start_size == 0 or 8 <= r.start_size < r.size,
            "start_size",
            "0 (off), or at least 8 pixels and under --size",
        ),
        (
            not r.start_size or r.cycles >= 1,
            "start_size",
            "0 without an unfrozen stage (--cycles 0): the final cycle takes its rates",
        ),
        (
            not r.start_size or r.arch not in ("digitnet",),
            "start_size",
            "0 for digitnet, whose head is sized for --size; timm networks pool any size",
        ),
        (
            not r.start_size or not r.snapshots,
            "start_size",
            "0 with --snapshots: snapshots average one size's cycles, and the final stage has one",
        ),
        (r.final_epochs >= 1, "final_epochs", "at least 1"),
        (0 < r.valid_pct < 1, "valid_pct", "between 0 and 1, e.g. 0.2"),
        (r.bs >= 1, "bs", "at least 1"),
        (r.min_batches >= 0, "min_batches", "0 (auto) or more (1: the batch is always bs)"),
        (r.lr >= 0, "lr", "positive, or 0 for the finder's suggestion"),
        (r.lr_rule in LR_RULES, "lr_rule", f"one of {', '.join(LR_RULES)}"),
        (
            r.body_lr == 0 or (r.body_lr > 0 and r.head_cycles and not r.lr),
            "body_lr",
            "0, or a positive rate with a head stage and no --lr (it sets the first layer "
            "group's rate once a frozen body unfreezes)",
        ),
        (r.head_cycles >= 0 and r.cycles >= 0, "cycles", "0 or more"),
        (r.head_cycles + r.cycles >= 1, "cycles", "at least one cycle in all"),
        (r.cycle_len >= 1 and r.head_cycle_len >= 1, "cycle_len", "at least 1 epoch"),
        (r.cycle_mult >= 1, "cycle_mult", "at least 1"),
        (r.lr_mult >= 1, "lr_mult", "at least 1"),
        (r.zoom >= 1, "zoom", "at least 1 (1 means no zoom)"),
        (0 <= r.shift < 1 and 0 <= r.lighting < 1, "shift/lighting", "between 0 and 1"),
        (0 <= r.crop_scale <= 1, "crop_scale", "between 0 (off) and 1, e.g. 0.35"),
        (r.crop_ratio >= 1, "crop_ratio", "at least 1 (1 keeps the aspect), e.g. 1.33"),
        (0 <= r.erase <= 1 and 0 <= r.saturation <= 1, "erase/saturation", "between 0 and 1"),
        (0 <= r.hue <= 0.5, "hue", "between 0 and 0.5 (half the colour wheel)"),
        (r.auto_augment in AUTO_AUGMENTS, "auto_augment", "'' (off), trivial or rand"),
        (r.balance in ("auto", "weights", "none"), "balance", "auto, weights or none"),
        (r.accumulate >= 1, "accumulate", "at least 1 (1: a step per batch)"),
        (r.clip >= 0, "clip", "0 (off) or a positive gradient norm, e.g. 1.0"),
        (0 <= r.drop_path < 1, "drop_path", "between 0 (off) and 1, e.g. 0.1"),
        (0 <= r.layer_decay < 1, "layer_decay", "0 (off) or a decay between 0 and 1, e.g. 0.75"),
        (r.resize in RESIZES, "resize", f"one of {', '.join(RESIZES)}"),
        (r.patience >= 0, "patience", "0 (off) or more epochs"),
        (r.min_delta >= 0, "min_delta", "0 or more"),
        (0 <= r.label_smoothing < 1, "label_smoothing", "between 0 and 1, e.g. 0.1"),
        (
            not (r.label_smoothing and r.multi_label),
            "label_smoothing",
            "0 with --multi-label (it spreads one label's share over the classes)",
        ),
        (r.mixup >= 0, "mixup", "0 (off) or a positive alpha, e.g. 0.4"),
        (r.cutmix >= 0, "cutmix", "0 (off) or a positive alpha, e.g. 1.0"),
        (not (r.mixup and r.cutmix), "mixup", "0 when --cutmix is on: use one of the two"),
        (0 <= r.ema < 1, "ema", "0 (off) or a decay between 0 and 1, e.g. 0.999"),
        (
            not r.snapshots or max(r.cycles, r.head_cycles if not r.cycles else 0) >= 2,
            "snapshots",
            "used with at least 2 cycles in the last stage (--cycles)",
        ),  # fmt: skip
        (r.folds == 0 or r.folds >= 2, "folds", "0 (one validation split) or at least 2"),
        (r.time_limit >= 0, "time_limit", "0 (no limit) or a positive number of minutes"),
        (r.log in ("", "tensorboard"), "log", "'' (none) or tensorboard"),
        (
            r.log != "tensorboard" or importlib.util.find_spec("tensorboard") is not None,
            "log",
            "'' until the tensorboard package is installed (pip install tensorboard)",
        ),
    ]
    for ok, field, want in rules:
        if not ok:
            value = getattr(r, field, None) if "/" not in field else None
            got = f" (got {value!r})" if value is not None else ""
            raise KitError(f"--{field.split('/')[0].replace('_', '-')} must be {want}{got}")
    return r


def packaged() -> ModuleType:
    """The package `competitions` of the recipes that ship with kit, imported from kit's own
    install. Where the working folder is an import root (`python -m kit.cli`, as torchrun starts
    each process; a notebook) and holds a competitions/ folder that `kit new` wrote, a plain
    import would take that folder for a namespace package that hides an editable install's."""
    mod = sys.modules.get("competitions")
    if getattr(mod, "__file__", None) is None:  # not imported yet, or a namespace of folders
        path = Path(__file__).resolve().parents[1] / "competitions"
        spec = importlib.util.spec_from_file_location(
            "competitions", path / "__init__.py", submodule_search_locations=[str(path)]
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules["competitions"] = mod
        spec.loader.exec_module(mod)
    return mod


def packaged_dir() -> Path:
    return Path(packaged().__path__[0])


def local_dir() -> Path:
    """Where `kit new` writes recipes: ./competitions (/kaggle/working/competitions in a
    Kaggle notebook)."""
    return output_root() / "competitions"


def module_name(name: str) -> str:
    """The file stem of recipe `name`: Kaggle's slugs have hyphens (dog-breed-identification),
    module names cannot, so the recipe is competitions/dog_breed_identification.py."""
    return name.replace("-", "_")


def recipe_files() -> dict[str, Path]:
    """Every recipe file by its stem: the packaged ones, and the local ones, which win on a
    clash."""
    found = {p.stem: p for p in packaged_dir().glob("*.py") if not p.name.startswith("_")}
    local = local_dir()
    if local.is_dir() and local.resolve() != packaged_dir().resolve():
        found |= {p.stem: p for p in local.glob("*.py") if not p.name.startswith("_")}
    return found


def recipe_names() -> list[str]:
    return sorted(recipe_files())


def is_recipe(name: str) -> bool:
    """Whether `name` (as typed: hyphens or underscores) names a recipe."""
    return module_name(name) in recipe_files()


def recipe_file(name: str) -> Path:
    """The file of recipe `name`; a KitError naming the choices if there is none."""
    files = recipe_files()
    if module_name(name) not in files:
        close = difflib.get_close_matches(module_name(name), list(files), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise KitError(f"unknown recipe {name!r}; {hint}the recipes are: {', '.join(sorted(files))}"
                       f" (`kit new {name} --data DIR` writes one)")  # fmt: skip
    return files[module_name(name)]


def load_competition(name: str) -> ModuleType:
    """The recipe module `name` (dog-breed-identification or dog_breed_identification: the same
    file); a KitError naming the choices if there is none."""
    path = recipe_file(name)
    if path.parent == packaged_dir():
        return importlib.import_module(f"competitions.{path.stem}")
    return import_file(f"kit_local_recipes.{path.stem}", path)


def import_file(module: str, path: Path) -> ModuleType:
    """Import a local recipe file (once); a broken one is a KitError naming its line."""
    if module in sys.modules and sys.modules[module].__file__ == str(path):
        return sys.modules[module]
    spec = importlib.util.spec_from_file_location(module, path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as e:
        import traceback

        lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == str(path)]
        line = getattr(e, "lineno", None) or (lines[-1] if lines else None)
        raise KitError(f"recipe {path} does not load: {type(e).__name__}: {e}"
                       f"{f' (line {line})' if line else ''}") from None  # fmt: skip
    if not isinstance(getattr(mod, "RECIPE", None), Recipe):
        raise KitError(f"recipe {path} has no RECIPE = Recipe(...)")
    sys.modules[module] = mod
    return mod


def competition_slug(name: str) -> str:
    """A recipe's Kaggle slug; a name that is no recipe is taken as a slug itself, so that
    `kit download SLUG` fetches a competition before `kit new` writes its recipe."""
    return load_competition(name).RECIPE.slug if is_recipe(name) else name


def recipe_table() -> list[tuple[str, str, str]]:
    """(name, "packaged" or the local file, description) for `kit list`: the name as the recipe
    gives it (kit new's dog-breed-identification), where that names its file."""
    rows = []
    for stem, path in sorted(recipe_files().items()):
        where = "packaged" if path.parent == packaged_dir() else str(path)
        r = load_competition(stem).RECIPE
        rows.append((r.name if module_name(r.name) == stem else stem, where, r.description))
    return rows
