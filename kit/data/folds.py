"""Which images validate which model. The folds belong to the data, not to a run: every run on
a competition folder gets the same ones, so runs that differ in --seed, arch or size blend.

Splits are stratified by class (a multi-label item by its rarest tag). Classes too small to
stratify are pooled into one stratum rather than refused, and a class of one image always
trains in a single split: many classes of a handful of images each (Humpback Whale) train."""

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from kit.data.layouts import Data
from kit.errors import KitError
from kit.recipe import Recipe

FOLDS_CSV = "folds.csv"  # columns item (as the run's CSVs name images) and fold; kept in the data


def class_of(y: torch.Tensor) -> np.ndarray:
    """Each item's class, as splits stratify it: a multi-hot item's rarest tag."""
    labels = y.numpy()
    if labels.ndim == 1:
        return labels
    return np.where(labels > 0, labels.sum(0), np.inf).argmin(1)


def pooled(labels: np.ndarray, least: int) -> np.ndarray:
    """`labels` with the classes of fewer than `least` items sharing one stratum (-1)."""
    return np.where(np.bincount(labels)[labels] < least, -1, labels)


def stratifiable(labels: np.ndarray, valid_pct: float) -> bool:
    """Can a split of `valid_pct` hold every class on both sides, as scikit-learn asks?"""
    n_valid = math.ceil(valid_pct * len(labels))
    counts = np.unique(labels, return_counts=True)[1]
    return counts.min() >= 2 and min(n_valid, len(labels) - n_valid) >= len(counts)


def split(
    y: torch.Tensor, valid_pct: float, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified train/validation indices; with `groups`, whole groups on either side."""
    idx = np.arange(len(y))
    if groups is not None:  # the first of round(1 / valid_pct) grouped folds validates
        valid = np.flatnonzero(fold_ids(y, max(2, round(1 / valid_pct)), seed, groups) == 0)
        return np.setdiff1d(idx, valid), valid
    labels = class_of(y)
    if stratifiable(labels, valid_pct):
        train, valid = train_test_split(idx, test_size=valid_pct, random_state=seed,
                                        stratify=labels)  # fmt: skip
        return np.sort(train), np.sort(valid)
    # A class of one image trains: validated, its class would have nothing to learn from.
    once = np.bincount(labels)[labels] < 2
    rest = idx[~once]
    if len(rest) < 2:
        raise KitError("every class has a single image, so none can be validated; give the "
                       "data a folds.csv, or more images per class")  # fmt: skip
    strata = pooled(labels[rest], max(2, math.ceil(1 / valid_pct)))
    stratify = strata if stratifiable(strata, valid_pct) else None
    train, valid = train_test_split(rest, test_size=valid_pct, random_state=seed,
                                    stratify=stratify)  # fmt: skip
    return np.sort(np.concatenate([train, idx[once]])), np.sort(valid)


def fold_ids(
    y: torch.Tensor, folds: int, seed: int, groups: np.ndarray | None = None
) -> np.ndarray:
    """Each item's fold, 0..folds-1: seeded and stratified by class (classes of fewer than
    `folds` images pooled), and with `groups`, each group in one fold."""
    labels = class_of(y)
    if len(labels) < folds:
        raise KitError(f"--folds {folds} needs at least {folds} images; the data has "
                       f"{len(labels)}")  # fmt: skip
    if groups is not None:
        n_groups = len(np.unique(np.asarray(groups)))
        if n_groups < folds:
            raise KitError(f"{folds} folds need at least {folds} groups; the data has {n_groups}")
        kfold = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    else:
        kfold = StratifiedKFold(folds, shuffle=True, random_state=seed)
    strata = pooled(labels, folds)
    ids = np.empty(len(labels), dtype=np.int64)
    with warnings.catch_warnings():  # a pooled stratum smaller than `folds` is expected here
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, valid) in enumerate(kfold.split(np.zeros(len(labels)), strata, groups)):
            ids[valid] = k
    return ids


def assign_folds(data: Data, r: Recipe, folder: Path) -> np.ndarray:
    """Each training item's fold; a single split (no --folds) validates on fold 0.

    A folds.csv in `folder` wins (as competitors keep theirs); else folds seeded by
    `fold_seed`, grouped when the data has groups."""
    if r.group_col and data.groups is None:
        raise KitError(f"--group-col {r.group_col}: the {r.name} recipe's reader gives no groups; "
                       "drop --group-col or give the data a folds.csv")  # fmt: skip
    path = folder / FOLDS_CSV
    if path.is_file():
        return read_folds(path, data.names, r.folds)
    if r.folds:
        return fold_ids(data.y, r.folds, r.fold_seed, data.groups)
    fold = np.ones(len(data.y), dtype=np.int64)
    fold[split(data.y, r.valid_pct, r.fold_seed, data.groups)[1]] = 0
    return fold


def read_folds(path: Path, names: list, folds: int = 0) -> np.ndarray:
    """The folds in `path`, in `names`' order, checked: every training item exactly once, no
    other item, folds numbered 0..K-1 (and K == `folds` when folds are asked for)."""
    try:
        df = pd.read_csv(path, dtype={"item": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        raise KitError(f"{path} cannot be read as CSV ({e}); it needs columns item,fold") from None
    if not {"item", "fold"} <= set(df.columns):
        raise KitError(f"{path} needs the columns item,fold (it has {', '.join(df.columns)})")
    fold = pd.to_numeric(df["fold"], errors="coerce")
    bad = df["item"][fold.isna() | (fold != fold.round()) | (fold < 0)]
    if len(bad):
        raise KitError(f"{path} gives {bad.iloc[0]!r} the fold {df['fold'][bad.index[0]]!r}; "
                       "folds are whole numbers 0, 1, 2...")  # fmt: skip
    dup = df["item"][df["item"].duplicated()]
    if len(dup):
        raise KitError(f"{path} names {dup.iloc[0]!r} more than once")
    given = dict(zip(df["item"], fold.astype(int)))
    known = [str(n) for n in names]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise KitError(f"{path} names {len(unknown)} items that are not training images, e.g. "
                       f"{unknown[0]!r}; items are named as in a run's folds.csv")  # fmt: skip
    missing = [n for n in known if n not in given]
    if missing:
        raise KitError(f"{path} has no fold for {len(missing)} training images, e.g. "
                       f"{missing[0]!r}; give every training image a fold")  # fmt: skip
    ids = np.array([given[n] for n in known], dtype=np.int64)
    k = len(np.unique(ids))
    if k < 2 or set(np.unique(ids)) != set(range(k)):
        raise KitError(f"{path} must number at least 2 folds 0..K-1; it has "
                       f"{sorted(set(ids.tolist()))}")  # fmt: skip
    if folds and folds != k:
        raise KitError(f"{path} holds {k} folds; run with --folds {k} (or move the file away)")
    return ids
