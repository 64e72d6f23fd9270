"""The house training method on a fastai Learner: learning-rate finder, SGDR stages, TTA."""

import random
import sys
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.mixup import CutMix, MixUp
from fastai.callback.progress import ProgressCallback
from fastai.callback.schedule import ParamScheduler, SchedCos, combine_scheds
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat
from fastai.optimizer import OptimWrapper
from fastai.torch_core import get_model
from fastcore.imports import IN_NOTEBOOK

from kit import distributed
from kit.budget import Budget, fitted
from kit.curves import Steps, plot_curves
from kit.errors import KitError
from kit.lr import choose, curve, describe, resolve, stage_rule
from kit.metrics import greater_is_better, learner_metric
from kit.models import layer_groups
from kit.paths import replacing
from kit.recipe import Recipe

# PyTorch's AdamW (one fused multi-tensor step) through fastai's wrapper, which keeps freezing
# and per-group rates: fastai's own Adam steps each tensor in Python, which cost 8% of an
# EfficientNet-Lite0 epoch on 2 CPU cores (measured).
ADAMW = partial(OptimWrapper, opt=torch.optim.AdamW)


class Autocast(Callback):
    """bfloat16 autocast for the forward pass and loss, on CPU or CUDA (no loss scaling needed)."""

    order = 10

    def __init__(self, device_type: str):
        self.device_type = device_type

    def before_batch(self):
        self.ctx = torch.autocast(self.device_type, dtype=torch.bfloat16)
        self.ctx.__enter__()

    def after_pred(self):
        self.learn.pred = self.pred.float()

    def after_loss(self):
        self.ctx.__exit__(None, None, None)


def resolve_device(name: str = "auto") -> torch.device:
    """auto picks CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise KitError(f"--device {name!r} is not a device; use auto, cpu, cuda or mps") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise KitError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision that will really run: bf16 only where the hardware has it."""
    if device.type == "cuda":
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    if (
        precision == "bf16"
        and device.type == "cpu"
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    ):
        return "bf16"
    return "fp32"  # fp16 autocast is slower than fp32 on CPUs; bf16 without hardware support too


class WeightAverage(Callback):
    """An exponential moving average of the weights (timm's ModelEmaV3, its decay warmed up from
    0 towards `decay` over the steps of each fit), updated after every step. Each epoch validates
    the averaged weights, so they are what the best-model and checkpoint callbacks keep; training
    goes on from the raw weights. A resumed run restarts the average from the checkpoint."""

    order = 5  # its before_validate swaps the weights in before any validation callback

    def __init__(self, decay: float):
        self.decay = decay

    def before_fit(self):
        # not in the finder's fit, nor in get_preds (which calls before_fit too)
        self.run = not hasattr(self.learn, "lr_finder") and not hasattr(self, "gather_preds")
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


def make_learner(model, dls, r: Recipe, path: Path, precision: str) -> Learner:
    """A fastai Learner with the recipe's metric and loss, its tricks (label smoothing, MixUp,
    CutMix, a moving average of the weights), three layer groups and clean logs."""
    cbs = {"bf16": [Autocast(dls.device.type)], "fp16": [MixedPrecision()], "fp32": []}[precision]
    if r.mixup:
        cbs.append(MixUp(r.mixup))
    if r.cutmix:
        cbs.append(CutMix(r.cutmix))
    if r.ema:
        cbs.append(WeightAverage(r.ema))
    smoothing = r.label_smoothing
    loss = LabelSmoothingCrossEntropyFlat(eps=smoothing) if smoothing else CrossEntropyLossFlat()
    if r.channels_last:
        model = model.to(memory_format=torch.channels_last)
    learn = Learner(
        dls,
        model,
        opt_func=ADAMW,
        loss_func=loss,
        metrics=[learner_metric(r.metric)],
        splitter=layer_groups,
        wd=r.wd,
        path=path,
        model_dir=".",
        cbs=cbs,
    )
    if not (sys.stdout.isatty() or IN_NOTEBOOK):
        print_epochs(learn)
    return learn


def print_epochs(learn: Learner) -> None:
    """Replace the progress bars with one plain line per epoch (for logs that are not terminals)."""
    learn.remove_cb(ProgressCallback)

    def log(values):
        names = learn.recorder.metric_names
        parts = [
            f"{n} {v:.4f}" if isinstance(v, float) else f"{n} {v}" for n, v in zip(names, values)
        ]
        print("  ".join(parts), flush=True)

    learn.logger = log


def monitor_name(learn: Learner) -> str:
    return learn.metrics[0].name


def find_lr(learn: Learner, png: Path, rule: str, show: bool = False) -> float:
    """fastai's learning-rate finder: the rate `rule` reads from its curve, marked on the plot;
    the plot and the curve (lr_find.csv: rate and smoothed loss per step) saved beside it."""
    learn.lr_find(suggest_funcs=None, show_plot=False)
    lrs, losses = learn.recorder.lrs, [float(v) for v in learn.recorder.losses]
    if len(curve(lrs, losses)[0]) < 2:  # the loss rose at once (a well-trained head): look on
        learn.lr_find(suggest_funcs=None, show_plot=False, stop_div=False)
        lrs, losses = learn.recorder.lrs, [float(v) for v in learn.recorder.losses]
    rate, point = choose(lrs, losses, rule)
    if distributed.is_main():
        print(f"learning rate {rate:.2e} from the finder ({describe(0, rule)}); plot: {png}")
    learn.recorder.plot_lr_find(suggestions=[point], nms=[f"{rule}: {rate:.2e}"])
    fig = plt.gcf()
    fig.axes[0].set_title(f"learning-rate finder: {rule} rule, {rate:.2e}")
    save_figure(fig, png, show)
    pd.DataFrame({"lr": lrs, "loss": losses}).to_csv(png.with_suffix(".csv"), index=False)
    return distributed.same(rate)  # rank 0's rate, in every process of a DDP run


def save_figure(fig, path: Path, show: bool) -> None:
    """Write a figure as PNG; keep it open for a notebook to show inline, else close it."""
    fig.savefig(path, dpi=100, bbox_inches="tight")
    if not show:
        plt.close(fig)


def fit_sgdr(learn, n_cycles, cycle_len, cycle_mult, lr, cbs=(), start_epoch=0) -> list[dict]:
    """SGDR: `n_cycles` cosine cycles, each `cycle_mult` times longer than the last; from
    `start_epoch` on when continuing an interrupted stage (the schedule resumes where it was).

    fastai's `Learner.fit_sgdr` divides by `cycle_mult - 1`, so it cannot run the seed's
    `cycle_mult=1` stage; this builds the same schedule from fastai's public schedulers.
    """
    learn.opt.set_hyper("lr", lr)
    lr_max = np.array([h["lr"] for h in learn.opt.hypers])
    lengths = [cycle_len * cycle_mult**i for i in range(n_cycles)]
    n_epoch = sum(lengths)
    sched = combine_scheds([n / n_epoch for n in lengths], [SchedCos(lr_max, 0) for _ in lengths])
    done = start_epoch / n_epoch

    def rest(pos):
        return sched(done + pos * (1 - done))

    learn.fit(n_epoch - start_epoch, cbs=[ParamScheduler({"lr": rest}), *cbs])
    return [epoch_row(learn, i) for i in range(len(learn.recorder.values))]


def epoch_row(learn: Learner, i: int) -> dict:
    """The Recorder's values for epoch `i` of the current fit, by name (losses and metric)."""
    names = learn.recorder.metric_names[1:-1]
    return dict(zip(names, map(float, learn.recorder.values[i])))


def stage_epochs(n_cycles: int, cycle_len: int, cycle_mult: int) -> int:
    return sum(cycle_len * cycle_mult**i for i in range(n_cycles))


def unfrozen_rates(r: Recipe, found: float, head_lr: float | None) -> tuple[float, float]:
    """(last group's rate, first group's rate) once everything trains.

    From scratch, or with a pinned rate: `found` and `found / lr_mult`. After a head stage the
    head keeps half its rate (fastai's `fine_tune` rule) and the finder, run again on the
    unfrozen network, sets the first group's rate, at least `lr_mult` times below the head's.
    """
    if r.lr or head_lr is None:
        return found, found / r.lr_mult
    top = head_lr / 2
    return top, min(max(found, top / r.lr_mult), top)


class Checkpoint(Callback):
    """After every epoch: the epoch's metrics go into `state`, and the model, optimizer, random
    state and `state` (stage, epochs done, learning rates, history) go to `path`, atomically."""

    order = 55  # after the Recorder has the epoch's values

    def __init__(self, path: Path, state: dict):
        self.path, self.state = path, state

    def after_epoch(self):
        st = self.state
        st["history"].append({"stage": st["stage"], **epoch_row(self.learn, -1)})
        st["epochs"][st["stage"]] = st["epochs"].get(st["stage"], 0) + 1
        checkpoint = {
            "model": get_model(self.learn.model).state_dict(),  # without a DDP wrapper
            "opt": self.learn.opt.state_dict(),
            "state": st,
            "rng": random_state(self.learn),
            "smooth": (self.recorder.smooth_loss.count, self.recorder.smooth_loss.val),
        }
        with replacing(self.path) as tmp:
            torch.save(checkpoint, tmp)


class Snapshots(Callback):
    """SGDR ends every cycle at a low learning rate: keep the model there, for the cycles of
    the last stage, as snapshot-<k>.pth."""

    order = 56  # after Checkpoint has counted the epoch

    def __init__(self, folder: Path, state: dict, stage: str, ends: list):
        self.folder, self.state, self.stage, self.ends = folder, state, stage, ends

    def after_epoch(self):
        done = self.state["epochs"].get(self.stage, 0)
        if self.state["stage"] == self.stage and done in self.ends:
            with replacing(self.folder / f"snapshot-{self.ends.index(done)}.pth") as tmp:
                torch.save(get_model(self.learn.model).state_dict(), tmp)


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
    """Recompute batch-norm statistics for averaged weights with a pass over the training data."""
    from torch.optim.swa_utils import update_bn as torch_update_bn

    with torch.no_grad():
        torch_update_bn((xb for xb, _ in learn.dls.train), learn.model)
    distributed.sync_buffers(learn.model)  # each process saw its own shard


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
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    learn.dls.train.gen.set_state(rng["loader"])


class Continue(Callback):
    """On the first fit after a resume, give the Recorder its running training loss and early
    stopping the best score and patience it had (fastai resets them when a fit starts)."""

    order = 61  # after the Recorder's and the trackers' own before_fit

    def __init__(self, smooth: tuple, early=None, values=(), min_delta=0.0, greater=True):
        self.smooth, self.early, self.values = smooth, early, values
        self.min_delta, self.greater = min_delta, greater

    def before_fit(self):
        self.recorder.smooth_loss.count, self.recorder.smooth_loss.val = self.smooth
        if self.early is not None:
            self.early.best, self.early.wait = early_stop_state(
                self.values, self.min_delta, self.greater
            )
        self.learn.remove_cb(self)


def early_stop_state(values: list, min_delta: float, greater=True) -> tuple[float, int]:
    """fastai's EarlyStoppingCallback state after seeing `values`: (best, epochs since)."""
    sign = 1 if greater else -1
    best, wait = -float("inf"), 0
    for v in values:
        if sign * v - min_delta > best:
            best, wait = sign * v, 0
        else:
            wait += 1
    return sign * best, wait


def fine_tune_sgdr(
    learn: Learner, r: Recipe, run_dir: Path, show=False, checkpoint=None, clock=None
):
    """The house schedule, keeping the best model (run_dir/model.pth) and a checkpoint after
    every epoch (run_dir/checkpoint.pth); given that checkpoint, it carries on from it. With a
    `clock` (kit.budget), the schedule is cut to the time limit after the first epoch.

    Returns the learning rates used and one row of metrics per epoch.
    """
    monitor, up = monitor_name(learn), greater_is_better(r.metric)
    rule = resolve(r.lr_rule, r.pretrained)
    state = {"stage": None, "epochs": {}, "rates": {}, "history": [], "steps": []}
    # on a tie the later, more annealed epoch wins
    save = SaveModelCallback(monitor, comp=np.greater_equal if up else np.less_equal,
                             fname="model", reset_on_fit=False)  # fmt: skip
    save.best = -float("inf") if up else float("inf")  # fastai starts np.less_equal at -inf
    cbs = [save, Checkpoint(run_dir / "checkpoint.pth", state), Steps(state)]
    early = None
    if r.patience:
        early = EarlyStoppingCallback(monitor=monitor, comp=np.greater if up else np.less,
                                      patience=r.patience, min_delta=r.min_delta)  # fmt: skip
        cbs.append(early)
    learn.create_opt()
    if clock is not None:
        cbs.append(Budget(clock, r, state))
        r = fitted(r, clock.plan)  # a later fold, or a resumed run, keeps the plan made
    stages = schedule(r)
    if r.snapshots:
        last, cycles, length, mult = [st for st in stages if st[1]][-1]
        ends = [stage_epochs(k, length, mult) for k in range(1, cycles + 1)]
        cbs.append(Snapshots(run_dir, state, last, ends))
    if checkpoint is not None:
        state.update(checkpoint["state"])
        learn.freeze() if state["stage"] == "head" else learn.unfreeze()  # clears opt state
        restore(learn, checkpoint)
        history = state["history"]
        if history:
            save.best = (max if up else min)(h[monitor] for h in history)
        if finished(state, stages, r, monitor, state["stage"]):
            learn.load("model", with_opt=False)  # what the end of that stage's fit does
        else:
            values = [h[monitor] for h in history if h["stage"] == state["stage"]]
            cbs.append(Continue(checkpoint["smooth"], early, values, r.min_delta, up))
    rates = state["rates"]
    for k in range(len(stages)):
        if clock is not None:  # the plan made after the first epoch holds from then on
            r = fitted(r, clock.plan)
            stages = schedule(r)
        stage, cycles, length, mult = stages[k]
        if finished(state, stages, r, monitor, stage):
            continue
        start = state["epochs"].get(stage, 0)
        if not start:  # (un)freezing clears the optimizer's state: only when a stage begins
            learn.freeze() if stage == "head" else learn.unfreeze()
        state["stage"] = stage
        if stage == "head":
            if "head_lr" not in rates:
                rates["head_lr"] = r.lr or find_lr(
                    learn, run_dir / "lr_find_frozen.png", rule, show
                )
            lr = rates["head_lr"]
        else:
            if "lr" not in rates:
                # a time limit may skip this finder run: fastai fine_tune's rates then
                skip = bool(clock and clock.plan and not clock.plan["finder"])
                unfrozen = stage_rule(rule, "head_lr" in rates)
                found = r.lr or (
                    0.0 if skip else find_lr(learn, run_dir / "lr_find.png", unfrozen, show)
                )
                rates["lr"], rates["lr_low"] = unfrozen_rates(r, found, rates.get("head_lr"))
            lr = (
                slice(rates["lr_low"], rates["lr"])
                if rates["lr_low"] < rates["lr"]
                else rates["lr"]
            )
        fit_sgdr(learn, cycles, length, mult, lr, cbs, start_epoch=start)  # ends on the best
    plot_curves(state["steps"], state["history"], monitor, run_dir / "training_curves.png", show)
    return dict(rates), state["history"]


def schedule(r: Recipe) -> list[tuple]:
    """(stage, cycles, first cycle's epochs, cycle_mult) for the head stage and the unfrozen one."""
    return [
        ("head", r.head_cycles, r.head_cycle_len, 1),
        ("all", r.cycles, r.cycle_len, r.cycle_mult),
    ]


def finished(state: dict, stages: list, r: Recipe, monitor: str, stage: str | None) -> bool:
    """Is `stage` over: all its epochs done, or ended by early stopping?"""
    cycles, length, mult = next(s[1:] for s in stages if s[0] == stage) if stage else (0, 1, 1)
    if not cycles or state["epochs"].get(stage, 0) >= stage_epochs(cycles, length, mult):
        return True
    values = [h[monitor] for h in state["history"] if h["stage"] == stage]
    waited = early_stop_state(values, r.min_delta, greater_is_better(r.metric))[1]
    return bool(r.patience) and waited >= r.patience


def predict(learn: Learner, loader, views=(None,)) -> np.ndarray:
    """Class probabilities for every item of `loader`, averaged over the TTA `views`."""
    probs = [
        distributed.gather(
            learn.get_preds(dl=distributed.shard(loader.new(augment=view)))[0], loader.n
        )
        for view in views
    ]  # in a DDP run each process predicts its share
    return torch.stack(probs).mean(0).float().numpy()
