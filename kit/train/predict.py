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
from kit.train import distributed


def predict(learn: Learner, loader, views=(None,)) -> np.ndarray:
    """Class probabilities for every item of `loader`, averaged over the TTA `views`."""
    probs = []
    for view in views:  # in a DDP run each process predicts its share
        part = distributed.shard(learn, loader.new(augment=view))
        probs.append(distributed.gather(learn, learn.get_preds(dl=part)[0], loader.n))
    return torch.stack(probs).mean(0).float().numpy()


def predictions(
    learn: Learner, data: Data, r: Recipe, valid_ids: list
) -> tuple[Predictions, Predictions]:
    """The validation items' (named `valid_ids`) and the test images' probabilities, plain and,
    if the recipe asks, with TTA."""
    valid, test = learn.dls.valid, test_loader(data, learn.dls.valid)
    plain = [predict(learn, valid), predict(learn, test)]
    tta = [predict(learn, valid, tta_views(r)), predict(learn, test, tta_views(r))] if r.tta else []
    return (
        Predictions(valid_ids, plain[0], tta[0] if tta else None),
        Predictions(data.test_ids, plain[1], tta[1] if tta else None),
    )
