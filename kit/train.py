"""The house training method on a fastai Learner: learning-rate finder, SGDR stages, TTA."""

import sys
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.progress import ProgressCallback
from fastai.callback.schedule import ParamScheduler, SchedCos, combine_scheds, valley
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import RocAucBinary, accuracy
from fastai.optimizer import OptimWrapper
from fastcore.imports import IN_NOTEBOOK

from kit.errors import KitError
from kit.models import layer_groups
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


def make_learner(model, dls, r: Recipe, path: Path, precision: str) -> Learner:
    """A fastai Learner with the recipe's metric, three layer groups and clean logs."""
    metric = accuracy if r.metric == "accuracy" else RocAucBinary()
    cbs = {"bf16": [Autocast(dls.device.type)], "fp16": [MixedPrecision()], "fp32": []}[precision]
    if r.channels_last:
        model = model.to(memory_format=torch.channels_last)
    learn = Learner(
        dls,
        model,
        opt_func=ADAMW,
        loss_func=CrossEntropyLossFlat(),
        metrics=[metric],
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


def find_lr(learn: Learner, png: Path, show: bool = False) -> float:
    """fastai's learning-rate finder: save the loss-vs-rate plot, return the valley suggestion."""
    try:
        suggestion = learn.lr_find(suggest_funcs=(valley,), show_plot=True).valley
    except IndexError:  # the loss rose at once (a well-trained head): too few points to judge
        suggestion = learn.lr_find(suggest_funcs=(valley,), show_plot=True, stop_div=False).valley
    fig = plt.gcf()
    fig.axes[0].set_title(f"learning-rate finder: suggestion {suggestion:.2e}")
    save_figure(fig, png, show)
    return float(suggestion)


def save_figure(fig, path: Path, show: bool) -> None:
    """Write a figure as PNG; keep it open for a notebook to show inline, else close it."""
    fig.savefig(path, dpi=100, bbox_inches="tight")
    if not show:
        plt.close(fig)


def fit_sgdr(learn: Learner, n_cycles: int, cycle_len: int, cycle_mult: int, lr, cbs=()) -> list:
    """SGDR: `n_cycles` cosine cycles, each `cycle_mult` times longer than the last.

    fastai's `Learner.fit_sgdr` divides by `cycle_mult - 1`, so it cannot run the seed's
    `cycle_mult=1` stage; this builds the same schedule from fastai's public schedulers.
    """
    learn.opt.set_hyper("lr", lr)
    lr_max = np.array([h["lr"] for h in learn.opt.hypers])
    lengths = [cycle_len * cycle_mult**i for i in range(n_cycles)]
    n_epoch = sum(lengths)
    sched = combine_scheds([n / n_epoch for n in lengths], [SchedCos(lr_max, 0) for _ in lengths])
    learn.fit(n_epoch, cbs=[ParamScheduler({"lr": sched}), *cbs])
    names = learn.recorder.metric_names[1:-1]
    return [dict(zip(names, map(float, values))) for values in learn.recorder.values]


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


def fine_tune_sgdr(learn: Learner, r: Recipe, run_dir: Path, show: bool = False):
    """The house schedule, keeping the best checkpoint (run_dir/model.pth).

    Returns the learning rates used and one row of metrics per epoch.
    """
    monitor = monitor_name(learn)
    # on a tie the later, more annealed epoch wins
    cbs = [SaveModelCallback(monitor, comp=np.greater_equal, fname="model", reset_on_fit=False)]
    if r.patience:
        cbs.append(EarlyStoppingCallback(monitor=monitor, comp=np.greater, patience=r.patience))
    learn.create_opt()
    rates, history = {}, []
    if r.head_cycles:
        learn.freeze()
        rates["head_lr"] = r.lr or find_lr(learn, run_dir / "lr_find_frozen.png", show)
        epochs = fit_sgdr(learn, r.head_cycles, r.head_cycle_len, 1, rates["head_lr"], cbs)
        history += [{"stage": "head", **e} for e in epochs]
    learn.unfreeze()
    if r.cycles:
        found = r.lr or find_lr(learn, run_dir / "lr_find.png", show)
        rates["lr"], rates["lr_low"] = unfrozen_rates(r, found, rates.get("head_lr"))
        lr = slice(rates["lr_low"], rates["lr"]) if rates["lr_low"] < rates["lr"] else rates["lr"]
        epochs = fit_sgdr(learn, r.cycles, r.cycle_len, r.cycle_mult, lr, cbs)
        history += [{"stage": "all", **e} for e in epochs]
    return rates, history


def predict(learn: Learner, loader, views=(None,)) -> np.ndarray:
    """Class probabilities for every item of `loader`, averaged over the TTA `views`."""
    probs = [learn.get_preds(dl=loader.new(augment=view))[0] for view in views]
    return torch.stack(probs).mean(0).float().numpy()
