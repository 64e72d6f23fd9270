"""Snapshot ensembling and stochastic weight averaging over the snapshots SGDR leaves at the end
of each cycle of the last stage: the last snapshot, their averaged predictions, or their
averaged weights, whichever scores best on validation."""

from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.torch_core import get_model

from kit.data.layouts import Data
from kit.evaluate.metrics import best
from kit.evaluate.predictions import Predictions, averaged, scores
from kit.files import replacing
from kit.recipe import Recipe
from kit.train import ddp
from kit.train.predict import predictions

SWA = "swa.pth"


def snapshot_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("snapshot-*.pth"), key=lambda p: int(p.stem.split("-")[1]))


def average_weights(states: list[dict]) -> dict:
    """Stochastic weight averaging over the snapshots: the mean of every float tensor."""
    return {
        k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype)
        if v.is_floating_point()
        else v
        for k, v in states[-1].items()
    }


def update_bn(learn: Learner) -> None:
    """Recompute batch-norm statistics with a pass over the training data (for averaged weights,
    and before each validation with --precise-bn)."""
    from torch.optim.swa_utils import update_bn as torch_update_bn

    with torch.no_grad():
        torch_update_bn((xb for xb, _ in learn.dls.train), learn.model)
    ddp.sync_buffers(learn)  # each process saw its own shard


class PreciseBN(Callback):
    """Batch-norm statistics recomputed over the training data before each validation
    (--precise-bn).

    The running statistics follow the batches by momentum 0.1: they need tens of steps to
    forget where they started (a new head's 0 and 1, ImageNet's in the body), and with a few
    batches an epoch validation predicts with other statistics than training does. On 300
    photos of nine breeds (3 batches an epoch) the validation log loss was 9-27 through the
    first three epochs while the training loss fell; recomputed, 2.9-3.7 after the first, and
    the held-out log loss 0.57, 0.69, 0.60 against 1.17, 0.89, 0.60. On transfer photos (7 and
    15 batches an epoch) it lost on average, so it is not a default (benchmarks/precise_bn.py).
    The pass costs a forward pass over the training set each epoch."""

    def before_validate(self):  # after fastai's TrainEvalCallback put the model in eval mode
        update_bn(self.learn)


def best_average(
    learn: Learner, data: Data, r: Recipe, folder: Path, valid_idx: np.ndarray
) -> tuple[Predictions, Predictions, dict]:
    """Predictions of the last snapshot, of all snapshots averaged (snapshot ensembling) and of
    their averaged weights (SWA, batch-norm statistics recomputed, saved as swa.pth when chosen);
    the one that scores best on validation is kept, and all three scores are reported."""
    y, ids = data.y[valid_idx].numpy(), [data.names[i] for i in valid_idx]
    states = [torch.load(path, map_location="cpu") for path in snapshot_paths(folder)]
    snaps = []
    for state in states:
        learn.model.load_state_dict(state)
        snaps.append(predictions(learn, data, r, ids))
    learn.model.load_state_dict(average_weights(states))
    update_bn(learn)
    candidates = {
        "last": snaps[-1],
        "snapshots": tuple(averaged([s[i] for s in snaps]) for i in (0, 1)),
        "swa": predictions(learn, data, r, ids),
    }
    scored = {}
    for name, (valid, _) in candidates.items():
        views = scores(r.metric, y, valid)
        scored[name] = views[best(r.metric, views)]  # with TTA or without, whichever is better
    chosen = best(r.metric, scored)  # ties go to the first: last, then snapshots
    if chosen == "swa":  # the averaged weights with their recomputed statistics, for kit predict
        with replacing(folder / SWA) as tmp:
            torch.save(get_model(learn.model).state_dict(), tmp)
    print("  ".join(f"{k} {v:.4f}" for k, v in scored.items()) + f": keeping {chosen}")
    return *candidates[chosen], {**scored, "chosen": chosen}
