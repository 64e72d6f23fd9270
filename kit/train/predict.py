"""Predictions of a trained Learner: class probabilities for every item of a loader, averaged
over the test-time augmentation views, gathered in order from every process of a DDP run."""

import numpy as np
import torch
from fastai.learner import Learner

from kit.data.augment import tta_views
from kit.data.layouts import Data
from kit.data.loader import test_loader
from kit.evaluate.predictions import Predictions
from kit.recipe import Recipe
from kit.train import ddp


def view_probs(learn: Learner, loader, views=(None,)) -> np.ndarray:
    """Class probabilities for every item of `loader` under each of the TTA `views`: an array
    (views, items, classes)."""
    probs = []
    for view in views:  # in a DDP run each process predicts its share
        part = ddp.shard(learn, loader.new(augment=view))
        probs.append(ddp.gather(learn, learn.get_preds(dl=part)[0], loader.n))
    return torch.stack(probs).float().numpy()


def predictions(
    learn: Learner, data: Data, r: Recipe, valid_ids: list
) -> tuple[Predictions, Predictions]:
    """The validation items' (named `valid_ids`) and the test images' probabilities, plain and,
    if the recipe asks, with TTA."""
    views = tta_views(r) if r.tta else [None]  # TTA's first view is the image itself: plain
    valid, test = (view_probs(learn, loader, views)
                   for loader in (learn.dls.valid, test_loader(data, learn.dls.valid)))  # fmt: skip
    return (
        Predictions(valid_ids, valid[0], valid.mean(0) if r.tta else None),
        Predictions(data.test_ids, test[0], test.mean(0) if r.tta else None),
    )
