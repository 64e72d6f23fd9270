"""The recipe: one competition's settings as plain data, and how to find a recipe by name."""

import dataclasses
import difflib
import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass
from types import ModuleType

from kit.errors import KitError


@dataclass(frozen=True)
class Recipe:
    """All a run needs to know; a competition sets only what differs from the house method."""

    name: str  # the CLI name: competitions/<name>.py
    slug: str  # the Kaggle competition slug
    description: str = ""  # one line for `kit list`
    metric: str = "accuracy"  # accuracy | auc; what the validation score and best checkpoint use
    # model
    arch: str = "resnet18"  # a kit network (kit/models.py) or any timm model name
    pretrained: bool = True  # start from ImageNet weights (found offline first, see --weights)
    size: int = 224  # pixels; images are resized (and cached) to size x size
    # data
    valid_pct: float = 0.2  # stratified validation split, seeded by fold_seed
    # The folds belong to the data, not the run: runs that differ in --seed, arch or size share
    # them, so they blend. A folds.csv (columns item, fold) in the data folder wins over fold_seed.
    fold_seed: int = 0  # seeds the folds and the validation split (a folds.csv in the data wins)
    group_col: str = ""  # the labels CSV column that groups images: a group stays in one fold
    bs: int = 64  # images per batch
    # augmentation, applied to whole batches as tensors
    rotate: float = 10.0  # max degrees either way
    shift: float = 0.0  # max translation, as a fraction of the image side
    zoom: float = 1.1  # scale drawn from [1/zoom, zoom]
    flip: bool = True  # horizontal flips
    lighting: float = 0.2  # max brightness and contrast change
    pad_mode: str = "reflection"  # how augmentation fills the border: reflection | zeros | border
    # the house schedule: SGDR on the head (body frozen), unfreeze, SGDR on everything
    lr: float = 0.0  # max learning rate; 0 takes the learning-rate finder's suggestion
    head_cycles: int = 1  # SGDR cycles with the body frozen (0 skips the stage)
    head_cycle_len: int = 1  # epochs in each head cycle (the head's cycles do not grow)
    cycles: int = 3  # SGDR cycles with everything trainable
    cycle_len: int = 1  # epochs in the first cycle
    cycle_mult: int = 2  # each cycle is this many times longer than the last
    lr_mult: float = 100.0  # discriminative rates: the first layer group learns lr/lr_mult
    wd: float = 0.01  # decoupled weight decay (AdamW)
    patience: int = 0  # early stopping after this many epochs without improvement (0: off)
    min_delta: float = 0.0  # the least gain in the metric that counts as an improvement
    snapshots: bool = False  # snapshot each cycle of the last stage; try their ensemble and SWA
    folds: int = 0  # K-fold cross-validation: K models, out-of-fold predictions (0: one split)
    tta: bool = True  # also predict with test-time augmentation and report both scores
    precision: str = "auto"  # auto | fp32 | bf16 | fp16; auto is bf16/fp16 on CUDA, fp32 on CPU
    channels_last: bool = True  # NHWC memory layout: faster convolutions on CPU and GPU
    seed: int = 42  # seeds the new weights, the batch order and augmentation (not the folds)
    time_limit: float = 0.0  # minutes for the run; cycles, finder and TTA cut to fit (0: none)


METRICS = ("accuracy", "auc")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PAD_MODES = ("reflection", "zeros", "border")


def field_help() -> dict[str, str]:
    """Each field's comment in the Recipe class above: the help text of its CLI flag."""
    source = inspect.getsource(Recipe)
    return dict(re.findall(r"^\s+(\w+): [^=\n]+=[^#\n]*#\s*(.+)$", source, re.M))


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


def check(r: Recipe) -> Recipe:
    """Raise KitError naming the first field whose value cannot work."""
    rules = [
        (r.metric in METRICS, "metric", f"one of {', '.join(METRICS)}"),
        (r.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}"),
        (r.pad_mode in PAD_MODES, "pad_mode", f"one of {', '.join(PAD_MODES)}"),
        (r.size >= 8, "size", "at least 8 pixels"),
        (0 < r.valid_pct < 1, "valid_pct", "between 0 and 1, e.g. 0.2"),
        (r.bs >= 1, "bs", "at least 1"),
        (r.lr >= 0, "lr", "positive, or 0 for the finder's suggestion"),
        (r.head_cycles >= 0 and r.cycles >= 0, "cycles", "0 or more"),
        (r.head_cycles + r.cycles >= 1, "cycles", "at least one cycle in all"),
        (r.cycle_len >= 1 and r.head_cycle_len >= 1, "cycle_len", "at least 1 epoch"),
        (r.cycle_mult >= 1, "cycle_mult", "at least 1"),
        (r.lr_mult >= 1, "lr_mult", "at least 1"),
        (r.zoom >= 1, "zoom", "at least 1 (1 means no zoom)"),
        (0 <= r.shift < 1 and 0 <= r.lighting < 1, "shift/lighting", "between 0 and 1"),
        (r.patience >= 0, "patience", "0 (off) or more epochs"),
        (r.min_delta >= 0, "min_delta", "0 or more"),
        (
            not r.snapshots or max(r.cycles, r.head_cycles if not r.cycles else 0) >= 2,
            "snapshots",
            "used with at least 2 cycles in the last stage (--cycles)",
        ),  # fmt: skip
        (r.folds == 0 or r.folds >= 2, "folds", "0 (one validation split) or at least 2"),
        (r.time_limit >= 0, "time_limit", "0 (no limit) or a positive number of minutes"),
    ]
    for ok, field, want in rules:
        if not ok:
            value = getattr(r, field, None) if "/" not in field else None
            got = f" (got {value!r})" if value is not None else ""
            raise KitError(f"--{field.split('/')[0].replace('_', '-')} must be {want}{got}")
    return r


def recipe_names() -> list[str]:
    """Every recipe in competitions/, by file name."""
    import competitions

    return sorted(m.name for m in pkgutil.iter_modules(competitions.__path__) if not m.ispkg)


def load_competition(name: str) -> ModuleType:
    """The module competitions/<name>.py; a KitError naming the choices if there is none."""
    names = recipe_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise KitError(f"unknown recipe {name!r}; {hint}the recipes are: {', '.join(names)}")
    return importlib.import_module(f"competitions.{name}")
