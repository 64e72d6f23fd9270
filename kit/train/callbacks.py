"""The callbacks the house schedule trains with: a moving average of the weights, a checkpoint
after every epoch (and what a resumed run needs to go on as if never stopped), snapshots at the
end of each SGDR cycle, gradient accumulation."""

import random
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.tracker import EarlyStoppingCallback
from fastai.callback.training import GradientAccumulation
from fastai.learner import Learner
from fastai.torch_core import get_model

from kit.files import replacing
from kit.train.progress import Progress, early_stop_state


def trains(learn: Learner) -> bool:
    """Whether `learn`'s current fit is training proper: not the finder's short fit, nor the
    one get_preds runs (which calls the callbacks' before_fit and validation events too)."""
    return not hasattr(learn, "lr_finder") and not hasattr(learn, "gather_preds")


class WeightAverage(Callback):
    """An exponential moving average of the weights (timm's ModelEmaV3, its decay warmed up from
    0 towards `decay` over the steps of each fit), updated after every step. Each epoch validates
    the averaged weights, so they are what the best-model callback keeps; training goes on from
    the raw weights, which a checkpoint keeps apart from the average (`kept`), so that a resumed
    run goes on from both as if never stopped."""

    order = 5  # its before_validate swaps the weights in before any validation callback

    def __init__(self, decay: float):
        self.decay, self.kept_average = decay, None

    def before_fit(self):
        self.run = trains(self.learn)
        if self.run:
            from timm.utils import ModelEmaV3

            self.average = ModelEmaV3(get_model(self.model), decay=self.decay, use_warmup=True)
            self.updates, self.raw = 0, None

    def after_step(self):
        self.updates += 1
        self.average.update(get_model(self.model), step=self.updates)

    def before_validate(self):
        model = get_model(self.model)
        self.raw = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.average.module.state_dict())

    def before_train(self):
        if self.raw is not None:
            get_model(self.model).load_state_dict(self.raw)
            self.raw = None

    def kept(self) -> dict:
        """What a checkpoint after validation needs: the raw weights (the model holds the
        average then) and the average with its count of updates (its decay's warm-up)."""
        return {"raw": self.raw, "average": self.average.module.state_dict(),
                "updates": self.updates}  # fmt: skip

    def carry_on(self) -> None:
        """Put back the average that `restore` took from a checkpoint (`self.kept_average`),
        once before_fit has started a new one: the fit continues an interrupted stage."""
        kept, self.kept_average = self.kept_average, None
        if kept is not None and self.run:
            self.average.module.load_state_dict(kept["average"])
            self.updates = kept["updates"]


class Accumulate(GradientAccumulation):
    """fastai's gradient accumulation, one optimizer step per `steps` batches of this process
    (fastai counts images: this process's batch times `steps`), in training proper only: the
    finder's sweep stays a step per batch, as its length, its stopping rules and the time limit
    count it. What a fit leaves unstepped is dropped, never added to the next fit's first step."""

    def __init__(self, steps: int):
        super().__init__(n_acc=steps)
        self.steps = steps

    def before_fit(self):
        self.run = trains(self.learn)
        if self.run:
            super().before_fit()
            self.n_acc = self.dls.train.bs * self.steps
            self.learn.opt.zero_grad()


def epoch_row(learn: Learner, i: int) -> dict:
    """The Recorder's values for epoch `i` of the current fit, by name (losses and metric)."""
    names = learn.recorder.metric_names[1:-1]
    return dict(zip(names, map(float, learn.recorder.values[i])))


class Checkpoint(Callback):
    """After every epoch: the epoch ends in `progress` with its metrics, and the model,
    optimizer, random state and `progress` (kit/train/progress.py) go to `path`, atomically."""

    order = 55  # after the Recorder has the epoch's values

    def __init__(self, path: Path, progress: Progress):
        self.path, self.progress = path, progress

    def after_epoch(self):
        self.progress.end_epoch(epoch_row(self.learn, -1))
        average = weight_average(self.learn)
        kept = average.kept() if average is not None and average.raw is not None else None
        checkpoint = {
            # the raw weights (without a DDP wrapper), not the average validated with --ema
            "model": kept.pop("raw") if kept else get_model(self.learn.model).state_dict(),
            "average": kept,
            "opt": self.learn.opt.state_dict(),
            "state": self.progress.saved(),
            "rng": random_state(self.learn),
            # AvgSmoothLoss's state (fastai 2.8.12; tests/test_fastai_contract.py)
            "smooth": (self.recorder.smooth_loss.count, self.recorder.smooth_loss.val),
        }
        with replacing(self.path) as tmp:
            torch.save(checkpoint, tmp)


def weight_average(learn) -> WeightAverage | None:
    return next((cb for cb in learn.cbs if isinstance(cb, WeightAverage)), None)


def random_state(learn) -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "loader": learn.dls.train.gen.get_state(),
    }


def restore(learn, checkpoint: dict) -> None:
    """Put the model, optimizer and random state back as they were after the saved epoch."""
    learn.model.load_state_dict(checkpoint["model"])
    learn.opt.load_state_dict(checkpoint["opt"])
    rng = checkpoint["rng"]
    torch.set_rng_state(rng["torch"])
    for i, state in enumerate(rng["cuda"][: torch.cuda.device_count()]):  # as many GPUs as here
        torch.cuda.set_rng_state(state, i)
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    learn.dls.train.gen.set_state(rng["loader"])
    if (average := weight_average(learn)) is not None:  # Continue puts it back (--ema)
        average.kept_average = checkpoint.get("average")


class Continue(Callback):
    """On the first fit after a resume, give the Recorder its running training loss, early
    stopping the best score and patience it had (fastai resets them when a fit starts) and the
    weight average the average it had (WeightAverage starts a new one)."""

    order = EarlyStoppingCallback.order + 1  # after the Recorder's (50), WeightAverage's (5) and
    # the trackers' own before_fit (60-63; fastai 2.8.12), which reset what this puts back

    def __init__(self, smooth: tuple, early=None, values=(), min_delta=0.0, greater=True):
        self.smooth, self.early, self.values = smooth, early, values
        self.min_delta, self.greater = min_delta, greater

    def before_fit(self):
        self.recorder.smooth_loss.count, self.recorder.smooth_loss.val = self.smooth
        if (average := weight_average(self.learn)) is not None:
            average.carry_on()
        if self.early is not None:
            self.early.best, self.early.wait = early_stop_state(
                self.values, self.min_delta, self.greater
            )
        self.learn.remove_cb(self)


class Snapshots(Callback):
    """SGDR ends every cycle at a low learning rate: keep the model there, for the cycles of
    the last stage, as snapshot-<k>.pth."""

    order = 56  # after Checkpoint has counted the epoch

    def __init__(self, folder: Path, progress: Progress, stage: str, ends):
        self.folder, self.progress, self.stage, self.ends = folder, progress, stage, ends

    def after_epoch(self):
        done, ends = self.progress.done(self.stage), self.ends()  # the plan's, as revised
        if self.progress.stage == self.stage and done in ends:
            with replacing(self.folder / f"snapshot-{ends.index(done)}.pth") as tmp:
                torch.save(get_model(self.learn.model).state_dict(), tmp)


def tensorboard(folder: Path) -> Callback:
    """fastai's TensorBoardCallback into `folder`, its steps counted across the schedule's fits
    (fastai counts each fit's from 0, so the unfrozen stage would draw over the head's) and its
    losses logged while training only (fastai's after_batch also fires on validation batches)."""
    from fastai.callback.tensorboard import TensorBoardCallback

    class Logged(TensorBoardCallback):
        def __init__(self):
            super().__init__(log_dir=str(folder), trace_model=False, log_preds=False)
            self.done = 0  # steps of the fits before this one

        @property
        def train_iter(self):
            return self.done + self.learn.train_iter

        def after_batch(self):  # fastai's, less what is not a number (a hyper set to None)
            if self.training:
                self.writer.add_scalar("train_loss", self.smooth_loss, self.train_iter)
                for i, h in enumerate(self.opt.hypers):
                    for k, v in h.items():
                        if isinstance(v, (int, float)):
                            self.writer.add_scalar(f"{k}_{i}", v, self.train_iter)

        def after_fit(self):
            self.done += self.learn.train_iter
            super().after_fit()

    return Logged()
