"""A finished run's models read back to predict with, and their predictions on a stream of
batches: what `kit predict` runs instead of training. Each model is fed as it was at training
time (its normalisation, channels, precision, TTA views) and its logits take the training loss's
activation (softmax, or a sigmoid per tag when multi-label), so its probabilities equal the ones
the run wrote for the same images."""

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kit.data.loader import model_input, scaled_stats
from kit.errors import KitError
from kit.files import read_json
from kit.recipe import Recipe, saved_recipe
from kit.train.averaging import SWA, snapshot_paths
from kit.train.learner import resolve_precision
from kit.train.models import create_model


@dataclass
class Model:
    """One trained network in eval mode, and the normalisation its inputs take."""

    net: nn.Module
    mean: torch.Tensor
    std: torch.Tensor


def model_dirs(run_dir: Path, r: Recipe) -> list[Path]:
    """The folder of each model a run trained: fold0/, fold1/... or the run folder itself."""
    return [run_dir / f"fold{k}" for k in range(r.folds)] if r.folds else [run_dir]


def kept_weights(folder: Path) -> list[Path]:
    """The weights files a model folder's predictions came from: its best epoch (model.pth), or
    with --snapshots the last snapshot, every snapshot (their predictions averaged), or their
    averaged weights (swa.pth), as the run chose."""
    record = read_json(folder / "unit.json", {})
    if "stats" not in record:
        raise KitError(f"{folder} holds no finished model that kit predict can read (unit.json "
                       "without its normalisation: a run from before kit predict, or unfinished); "
                       "train the run again")  # fmt: skip
    chosen = record.get("averaging", {}).get("chosen")
    snaps = snapshot_paths(folder)
    files = {"last": snaps[-1:], "snapshots": snaps, "swa": [folder / SWA]}.get(
        chosen, [folder / "model.pth"]
    )
    missing = [f for f in files or [folder / "snapshot-0.pth"] if not f.is_file()]
    if missing:
        raise KitError(f"{missing[0]} is missing; copy the whole run folder")
    return files


def prediction_files(run_dir: Path, member: bool = False) -> list[Path]:
    """What `kit predict` reads of a finished run, and nothing else: its recipe and metrics,
    each model's record and kept weights, and for an ensemble's `member` the out-of-fold (and
    test) predictions its blend is fitted on again. An ensemble run itself: its recipe and
    metrics (its members hold the models)."""
    made = read_json(run_dir / "recipe.json")
    files = [run_dir / "recipe.json", run_dir / "metrics.json"]
    if "members" in made:
        return files
    if member:
        files += [run_dir / "oof.csv", run_dir / "test_preds.csv"]
    for folder in model_dirs(run_dir, saved_recipe(made)):
        files += [folder / "unit.json", *kept_weights(folder)]
    return files


def load_model(path: Path, r: Recipe, n_classes: int, device: torch.device) -> Model:
    """The network `path` holds, built as training built it but without pretrained weights."""
    record = read_json(path.parent / "unit.json")
    net = create_model(r.arch, n_classes, record["channels"], size=r.size)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as e:  # a truncated or foreign file: pickle, zip and key errors alike
        raise KitError(
            f"{path} cannot be read as a {r.arch} model ({type(e).__name__}); it is "
            "damaged or from another run: copy the run folder again"
        ) from None
    net = net.to(device).eval()
    if r.channels_last:
        net = net.to(memory_format=torch.channels_last)
    mean, std = scaled_stats(record["stats"])
    return Model(net, mean.to(device), std.to(device))


def load_models(run_dir: Path, r: Recipe, n_classes: int, device) -> list[list[Model]]:
    """Every model of a run, grouped by fold: each group's predictions are averaged (snapshots),
    then the groups' (folds)."""
    groups = [kept_weights(folder) for folder in model_dirs(run_dir, r)]  # all checked first
    return [[load_model(p, r, n_classes, device) for p in files] for files in groups]


def probabilities(
    groups: list[list[Model]], batches: Iterable, views, r: Recipe, device: torch.device
) -> np.ndarray:
    """Class probabilities for every image of `batches` (uint8), each model's averaged over the
    `views` (None: the image as it is), then over each group's models, then over the groups."""
    out = []
    with torch.inference_mode():
        for xb in batches:
            xb = xb.to(device, non_blocking=True)
            per_group = [
                torch.stack([one_model(m, xb, views, r, device) for m in models]).mean(0)
                for models in groups
            ]
            out.append(torch.stack(per_group).mean(0).cpu())
    return torch.cat(out).numpy()


def one_model(m: Model, xb: torch.Tensor, views, r: Recipe, device: torch.device) -> torch.Tensor:
    """One network's probabilities for a uint8 batch, averaged over the TTA `views`, made as
    training made them: its inputs (kit/data/loader.model_input), its precision, its loss's
    activation (sigmoid for multi-label, else softmax)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
        resolve_precision(r.precision, device)
    )
    activation = torch.sigmoid if r.multi_label else partial(torch.softmax, dim=-1)
    per_view = []
    for view in views:
        fixed = (lambda x, gen, v=view: v(x)) if view is not None else None
        x = model_input(xb, m.mean, m.std, fixed, None, r.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = m.net(x)
        per_view.append(activation(logits.float()))
    return torch.stack(per_view).mean(0)
