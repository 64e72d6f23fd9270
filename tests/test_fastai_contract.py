"""What kit reads or writes inside fastai (read from fastai 2.8.12), on a tiny Learner: when a
fastai release renames or reorders these, this file fails, rather than a DDP run's scores or
a resumed run's schedule silently going wrong.

Each test names the kit code that relies on it."""

import fastai.callback.schedule  # noqa: F401  (adds Learner.lr_find, as kit/train/finder.py imports it)
import numpy as np
import pytest
import torch
from fastai.callback.core import Callback
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.data.core import DataLoaders
from fastai.learner import AvgLoss, AvgMetric, AvgSmoothLoss, Learner, Recorder
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import AccumMetric

from kit.evaluate.metrics import learner_metric
from kit.train.callbacks import Continue, trains
from kit.train.curves import smooth

N, FEATURES = 16, 4


def tiny_learner(tmp_path, bs=4, cbs=(), metrics=None) -> Learner:
    """A linear model on random tensors: 16 training and 16 validation rows, two classes."""
    g = torch.Generator().manual_seed(0)

    def rows():
        x = torch.randn(N, FEATURES, generator=g)
        return list(zip(x, (x[:, 0] > 0).long()))

    dls = DataLoaders.from_dsets(rows(), rows(), bs=bs, device="cpu")
    torch.manual_seed(0)
    metrics = [learner_metric("accuracy"), learner_metric("auc")] if metrics is None else metrics
    return Learner(dls, torch.nn.Linear(FEATURES, 2), loss_func=CrossEntropyLossFlat(),
                   metrics=metrics, path=tmp_path, model_dir=".", cbs=list(cbs))  # fmt: skip


def fit(learn: Learner, epochs=1, lr=1e-3, cbs=()) -> None:
    with learn.no_bar(), learn.no_logging():
        learn.fit(epochs, lr, cbs=list(cbs))


class At(Callback):
    """Run `fn(learn)` at one event, at callback order `order`."""

    def __init__(self, event: str, order: int, fn):
        self.order = order
        setattr(self, event, lambda: fn(self.learn))


def test_valid_mets_are_the_loss_and_metrics_that_shared_validation_combines(tmp_path):
    """kit/train/ddp.py SharedValidation: `Recorder._valid_mets` lists the validation
    loss (AvgLoss) and metrics (AvgMetric: total, count; AccumMetric: preds, targs), and what a
    callback just before the Recorder puts into them after validating is what gets recorded."""
    seen = {}

    def combine(learn):
        mets = list(learn.recorder._valid_mets)
        seen["kinds"] = [type(m) for m in mets]
        seen["counts"] = [m.count for m in mets[:2]]
        loss, acc, auc = mets
        loss.total, loss.count = loss.total * 3, loss.count  # a loss sum from other shares
        acc.total, acc.count = acc.total + 0, acc.count * 2  # as many rows, none right
        auc.preds, auc.targs = auc.preds + auc.preds, auc.targs + auc.targs
        seen["values"] = [float(m.value) for m in mets]

    learn = tiny_learner(tmp_path)
    fit(learn, cbs=[At("after_validate", Recorder.order - 1, combine)])
    assert seen["kinds"] == [AvgLoss, AvgMetric, AccumMetric]
    assert seen["counts"] == [N, N]  # items, not batches
    recorded = [float(v) for v in learn.recorder.values[-1][1:]]  # after the training loss
    assert recorded == pytest.approx(seen["values"])
    assert learn.recorder.metric_names[2:5] == ["valid_loss", "accuracy", "auc"]


def test_shared_validation_sees_the_validation_loader_itself(tmp_path):
    """SharedValidation: during a fit's validation `learn.dl is learn.dls.valid` (it shards it)."""
    seen = []
    learn = tiny_learner(tmp_path)
    fit(learn, cbs=[At("before_validate", 0, lambda lr: seen.append(lr.dl is lr.dls.valid))])
    assert seen == [True]


def test_shared_loss_replaces_the_loss_before_the_recorder_smooths_it(tmp_path):
    """SharedLoss (order Recorder.order - 1) sets `learn.loss` in after_batch: the smoothed loss
    the Recorder logs and the finder stops on is computed from it."""

    def louder(learn):
        if learn.training:
            learn.loss = torch.full_like(learn.loss, 7.0)

    learn = tiny_learner(tmp_path, bs=N)
    fit(learn, cbs=[At("after_batch", Recorder.order - 1, louder)])
    assert float(learn.recorder.losses[0]) == pytest.approx(7.0)


def test_shared_scores_replace_the_record_that_the_trackers_read(tmp_path):
    """SharedScores (order Recorder.order + 1) sets `recorder.values[-1]` and `learn.final_record`
    after each epoch; SaveModelCallback reads the former into `best` (kit/train/sgdr.py)."""

    def broadcast(learn):
        row = list(learn.recorder.values[-1])
        row[2] = 0.125  # rank 0's accuracy
        learn.recorder.values[-1] = learn.final_record = type(learn.final_record)(row)

    save = SaveModelCallback("accuracy", comp=np.greater_equal, fname="model",
                             reset_on_fit=False)  # fmt: skip
    save.best = -float("inf")
    learn = tiny_learner(tmp_path)
    fit(learn, cbs=[At("after_epoch", Recorder.order + 1, broadcast), save])
    assert save.best == 0.125 and learn.final_record[2] == 0.125
    assert (tmp_path / "model.pth").is_file()


def test_save_model_keeps_a_best_set_before_the_fit(tmp_path):
    """kit/train/sgdr.py sets `SaveModelCallback.best` before fitting (a resumed run's best):
    with reset_on_fit=False fastai keeps it, so a worse epoch saves nothing."""
    save = SaveModelCallback("accuracy", comp=np.greater_equal, fname="model",
                             reset_on_fit=False)  # fmt: skip
    save.best = 2.0  # no accuracy reaches it
    learn = tiny_learner(tmp_path)
    learn.save("model")  # the earlier best, which fastai loads back after the fit
    saved = (tmp_path / "model.pth").read_bytes()
    fit(learn, cbs=[save])
    assert save.best == 2.0 and (tmp_path / "model.pth").read_bytes() == saved


def test_a_resumed_fit_restores_smooth_loss_and_early_stopping(tmp_path):
    """kit/train/callbacks.py Checkpoint and Continue: `recorder.smooth_loss` is an AvgSmoothLoss
    whose `count` and `val` carry its state; EarlyStoppingCallback's `best` and `wait` carry
    its; fastai resets both at before_fit (the Recorder at 50, early stopping at 63), and
    Continue, running after them, puts them back."""
    learn = tiny_learner(tmp_path, bs=N)
    fit(learn)
    smooth_loss = learn.recorder.smooth_loss
    assert isinstance(smooth_loss, AvgSmoothLoss) and smooth_loss.count == 1
    saved = (smooth_loss.count, smooth_loss.val.clone())
    early = EarlyStoppingCallback("accuracy", comp=np.greater, patience=2)
    # the stage's accuracies so far: a best of 1.0 (never beaten) and one epoch without it
    fit(learn, epochs=3, cbs=[early, Continue(saved, early, values=[1.0, 0.5])])
    assert smooth_loss.count == 2  # carried on from 1, not restarted at 0
    assert len(learn.recorder.values) == 1  # stopped after one more epoch without improving


def test_the_recorders_smoothed_loss_is_the_one_kit_redraws(tmp_path):
    """kit/train/curves.py `smooth`: fastai's debiased moving average (beta 0.98) of the step
    losses, as the Recorder logs it; Steps reads the rate from `opt.hypers[-1]["lr"]`."""
    steps = []
    learn = tiny_learner(tmp_path)

    def step(learn):
        if learn.training:
            steps.append((float(learn.loss.detach()), learn.opt.hypers[-1]["lr"]))

    fit(learn, epochs=2, lr=3e-3, cbs=[At("after_batch", 54, step)])
    losses, lrs = zip(*steps)
    # fastai keeps its average in float32: a relative rounding of ~1e-7 a step over 108 steps
    assert [float(v) for v in learn.recorder.losses] == pytest.approx(
        smooth(np.array(losses)), rel=1e-4
    )
    assert list(lrs) == pytest.approx([3e-3] * len(steps)) == learn.recorder.lrs


def test_trains_tells_the_finder_and_get_preds_from_a_fit(tmp_path):
    """kit/train/callbacks.py `trains`: the finder's fit has a `learn.lr_finder` attribute,
    get_preds' a `learn.gather_preds`, a fit neither (fastai's trackers test the same)."""
    seen = []
    learn = tiny_learner(tmp_path, cbs=[At("before_fit", 0, lambda lr: seen.append(trains(lr)))])
    fit(learn)
    with learn.no_bar(), learn.no_logging():
        learn.get_preds(dl=learn.dls.valid)
        learn.lr_find(num_it=3, show_plot=False, suggest_funcs=())
    assert seen == [True, False, False]
