"""Pseudo-labels without leaks: `kit run NAME --pseudo-label RUN` trains fold k on its own
training images plus the test images that fold k's model in RUN (an ensemble: its members'
fold-k models, averaged) labelled confidently.

Fold k's model in RUN never saw fold k's validation images, so its labels carry nothing of them
and the out-of-fold score stays honest. Labels from the whole ensemble would leak: its other
folds' models trained on fold k's validation images, and a test image like one of those comes
back labelled with that image's true label (tests/test_pseudo.py measures the leak).

The labels are hard (the class, or a multi-label task's tags at 0.5): above the threshold a
soft target is nearly the hard one anyway, and a hard label keeps every loss and trick the run
uses (class weights, label smoothing, MixUp, CutMix) as it is, and validation untouched.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kit.data.folds import FOLDS_CSV
from kit.data.layouts import Data
from kit.errors import KitError
from kit.files import read_json, replacing
from kit.paths import output_root
from kit.runs.folder import finished_run, member_runs
from kit.runs.record import read_record

FILE = "pseudo.csv"  # in each fold's folder: the test images it trained on, their labels


def source_runs(runs: Path, name: str, run: str) -> tuple[Path, list[Path]]:
    """RUN's folder and the k-fold runs whose fold models label the test images (RUN itself,
    or an ensemble's members, nested ensembles opened too); a KitError when RUN is not a
    finished k-fold run of `name`."""
    source = finished_run(runs, name, run)
    found, todo = [], [source]
    while todo:
        path = todo.pop(0)
        members = member_runs(path, name)
        if members == [path]:
            found.append(path)
        else:
            todo += members
    for path in found:
        folds = read_record(path).folds
        if not folds or not all((path / f"fold{k}" / "preds.npz").is_file() for k in range(folds)):
            raise KitError(f"run {path.name} is not a k-fold run; pseudo-labels take each fold's "
                           f"own model: train it with --folds K")  # fmt: skip
        if (path / FOLDS_CSV).read_text() != (found[0] / FOLDS_CSV).read_text():
            raise KitError(f"runs {found[0].name} and {path.name} have different folds")
    return source, found


def run_options(name: str, options: dict) -> dict:
    """kit run's `options` with RUN's folds (--folds K and its folds.csv) when --pseudo-label
    RUN is given; a KitError, before anything is written, where they cannot be RUN's."""
    run = options.get("pseudo_label")
    if not run:
        return options
    threshold = options.get("pseudo_threshold")
    if threshold is not None and not 0 < threshold < 1:
        raise KitError(f"--pseudo-threshold must be between 0 and 1, e.g. 0.9 (got {threshold})")
    runs = output_root(options.get("out")) / "runs" / name
    source, members = source_runs(runs, name, run)
    saved = read_json(members[0] / "recipe.json")
    for key in ("folds", "fold_seed"):
        given = options.get(key)
        flag = "--" + key.replace("_", "-")
        if given is not None and given != saved.get(key):
            raise KitError(f"--pseudo-label {run} trains on that run's folds ({flag} "
                           f"{saved.get(key)}); drop {flag} {given}")  # fmt: skip
    return {**options, "folds": saved["folds"], "folds_csv": source / FOLDS_CSV}


def fold_probs(members: list[Path], k: int, d: Data) -> np.ndarray:
    """The test probabilities of the members' fold-k models (those each run submits: with TTA
    or without), averaged; checked to be this data's test images and classes."""
    probs = []
    for path in members:
        record = read_record(path)
        ids = pd.read_csv(path / "test_preds.csv", usecols=["id"], dtype={"id": str})["id"]
        if list(ids) != [str(i) for i in d.test_ids] or record.classes != d.classes:
            raise KitError(f"run {path.name} predicted other test images or classes than this "
                           "data has; pseudo-label with a run of the same data")  # fmt: skip
        saved = np.load(path / f"fold{k}" / "preds.npz")
        probs.append(saved["test_tta" if record.tta and "test_tta" in saved else "test"])
    return np.mean(probs, 0)


def confident(probs: np.ndarray, threshold: float, multi_label=False) -> tuple[np.ndarray, ...]:
    """(rows, hard labels, confidence) of the test images labelled with confidence at least
    `threshold`: the top class's probability; multi-label, the least sure tag's (max(p, 1-p)),
    each tag decided at 0.5."""
    if multi_label:
        sure = np.maximum(probs, 1 - probs).min(1)
        labels = (probs >= 0.5).astype(np.float32)
    else:
        sure, labels = probs.max(1), probs.argmax(1)
    rows = np.flatnonzero(sure >= threshold)
    return rows, labels[rows], sure[rows]


def with_pseudo(d: Data, rows: np.ndarray, labels: np.ndarray) -> Data:
    """`d` with the test images at `rows` appended to the training images, labelled `labels`;
    the training items keep their indices, so the folds' held-out indices still hold."""
    y = torch.as_tensor(labels, dtype=d.y.dtype).reshape(len(rows), *d.y.shape[1:])
    names = [f"test:{d.test_ids[i]}" for i in rows]
    groups = d.groups + names if d.groups is not None else None
    return dataclasses.replace(d, x=torch.cat([d.x, d.test_x[torch.as_tensor(rows)]]),
                               y=torch.cat([d.y, y]), names=d.names + names,
                               groups=groups)  # fmt: skip


def fold_data(job, k: int, folder: Path) -> Data:
    """The data fold k trains on (its model's folder `folder`): with --pseudo-label, the
    confident test images of RUN's fold k added, recorded in `folder`/pseudo.csv and said in a
    line; a fold already trained is read back and needs none."""
    r, d = job.recipe, job.data
    if not r.pseudo_label or (folder / "preds.npz").exists():
        return d
    _, members = source_runs(job.root / "runs" / r.name, r.name, r.pseudo_label)
    probs = fold_probs(members, k, d)
    rows, labels, sure = confident(probs, r.pseudo_threshold, r.multi_label)
    if r.multi_label:
        text = [" ".join(c for c, on in zip(d.classes, row) if on) for row in labels]
    else:
        text = [d.classes[i] for i in labels]
    folder.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"id": [d.test_ids[i] for i in rows], "label": text,
                          "confidence": sure.round(6)})  # fmt: skip
    with replacing(folder / FILE) as tmp:
        table.to_csv(tmp, index=False)
    source = f"{len(members)} runs' fold-{k} models" if len(members) > 1 else f"fold {k}'s model"
    print(f"fold {k + 1}: {len(rows)} of {len(probs)} test images pseudo-labelled by {source} "
          f"in {r.pseudo_label} (confidence >= {r.pseudo_threshold:g})")  # fmt: skip
    return with_pseudo(d, rows, labels)
