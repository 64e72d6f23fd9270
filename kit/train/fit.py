"""One model trained in its own folder: built, fitted by the house schedule (carrying on from its
checkpoint after an interruption) and its predictions kept; a model that finished is read back,
not trained again. A run trains one, or one per fold."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kit.data.layouts import Data
from kit.evaluate.predictions import Predictions
from kit.files import read_json, replacing, write_json
from kit.recipe import Recipe
from kit.train import distributed
from kit.train.averaging import best_average
from kit.train.budget import Clock, check_up_front, with_plan
from kit.train.learner import build_learner
from kit.train.predict import predictions
from kit.train.sgdr import fine_tune_sgdr


@dataclass
class Trained:
    """One model's predictions, and what its training recorded (unit.json): the learning rates,
    one row per epoch, the plan and its decisions, the process that trained it, the
    snapshot/SWA choice, and what `kit predict` needs to feed it (the normalisation and the
    number of channels)."""

    valid: Predictions
    test: Predictions
    record: dict


def train_model(
    r: Recipe,
    data: Data,
    device: torch.device,
    weights: Path | None,
    folder: Path,
    valid_idx: np.ndarray,
    show: bool,
    clock: Clock | None = None,
) -> Trained:
    """Train one model with the items at `valid_idx` held out, checkpointing every epoch into
    `folder`; with a `clock`, within the run's time limit."""
    ids = [data.names[i] for i in valid_idx]
    done = folder / "preds.npz"
    if done.exists():
        return Trained(*read_predictions(done, ids, data.test_ids), read_json(folder / "unit.json"))
    folder.mkdir(exist_ok=True)
    learn = build_learner(r, data, device, weights, folder, valid_idx)
    ckpt = folder / "checkpoint.pth"
    # onto the CPU whatever device wrote it (a GPU box's run resumed on a CPU, each DDP rank's
    # own GPU, not the cuda:0 it was saved from): restore copies it onto the model's device
    saved = torch.load(ckpt, map_location="cpu", weights_only=False) if ckpt.exists() else None
    if clock and clock.plan is None and not clock.checked:  # in each process once, before
        check_up_front(learn, r, clock)  # it trains (with or without a checkpoint: all agree)
    rates, history, plan = fine_tune_sgdr(learn, r, folder, show, saved, clock)
    if clock:  # the schedule the time limit kept (TTA included) holds from here on
        r = with_plan(r, clock.plan)
    record = {"rates": rates, "history": history, "process": distributed.rank(),
              "stats": learn.dls.valid.stats, "channels": data.x.shape[1],
              "plan": plan.saved()}  # fmt: skip
    if r.snapshots:
        valid, test, record["averaging"] = best_average(learn, data, r, folder, valid_idx)
    else:
        valid, test = predictions(learn, data, r, ids)
    write_json(folder / "unit.json", record)
    with replacing(done) as tmp:
        np.savez(tmp, **arrays(valid, "valid"), **arrays(test, "test"))
    ckpt.unlink(missing_ok=True)
    return Trained(valid, test, record)


def arrays(p: Predictions, split: str) -> dict:
    """preds.npz's arrays for one split: <split> and, with TTA, <split>_tta."""
    return {split: p.plain} | ({f"{split}_tta": p.tta} if p.tta is not None else {})


def read_predictions(path: Path, valid_ids: list, test_ids: list) -> tuple[Predictions, ...]:
    saved = np.load(path)
    return tuple(
        Predictions(ids, saved[split], saved[f"{split}_tta"] if f"{split}_tta" in saved else None)
        for split, ids in (("valid", valid_ids), ("test", test_ids))
    )
