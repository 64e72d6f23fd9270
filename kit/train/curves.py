"""Training you can see: the loss and learning rate of every step and the validation loss and
metric of every epoch, over both stages, recorded as plain rows and drawn as one PNG."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from fastai.callback.core import Callback

from kit.files import save_figure


class Steps(Callback):
    """Append each training step's loss and last-group learning rate to `progress.steps` (kept
    in the checkpoint, so a resumed run keeps the steps of its finished epochs). The
    losses stay on the device until the epoch ends, then come over at once: reading a GPU's
    loss every step would make the CPU wait for each step's work."""

    order = 54  # after the loss is computed; before Checkpoint saves the epoch

    def __init__(self, progress):
        self.progress, self.rows, self.losses = progress, [], []

    def after_batch(self):
        if self.training:
            p = self.progress
            lr = float(self.learn.opt.hypers[-1]["lr"])
            self.rows.append((p.stage, len(p.history), lr))
            self.losses.append(self.learn.loss.detach())

    def after_epoch(self):
        self.record()

    def after_fit(self):
        self.record()  # a fit stopped mid-epoch

    def record(self):
        """The pending steps into `progress.steps`, their losses read in one transfer."""
        if self.rows:
            losses = torch.stack([loss.float() for loss in self.losses]).tolist()
            self.progress.steps += [
                {"stage": stage, "epoch": epoch, "loss": loss, "lr": lr}
                for (stage, epoch, lr), loss in zip(self.rows, losses)
            ]
        self.rows, self.losses = [], []


def smooth(values: np.ndarray, beta: float = 0.98) -> np.ndarray:
    """fastai's debiased exponential moving average of the training loss."""
    out, avg = np.empty(len(values)), 0.0
    for i, v in enumerate(values):
        avg = beta * avg + (1 - beta) * v
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def plot_curves(steps: list, history: list, metric: str, path: Path, show: bool = False) -> None:
    """Three panels on one step axis: losses, the metric, the learning rate; stages marked."""
    if not steps:
        return
    loss, lr = (np.array([s[k] for s in steps]) for k in ("loss", "lr"))
    epoch = np.array([s["epoch"] for s in steps])
    ends = [int(np.flatnonzero(epoch == e)[-1]) + 1 for e in range(len(history)) if e in epoch]
    rows = history[: len(ends)]
    fig, (ax_loss, ax_metric, ax_lr) = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    x = np.arange(1, len(steps) + 1)
    ax_loss.plot(x, loss, c="C0", alpha=0.25, lw=0.8)
    ax_loss.plot(x, smooth(loss), c="C0", label="training loss (smoothed)")
    ax_loss.plot(ends, [h["valid_loss"] for h in rows], "o-", c="C1", label="validation loss")
    ax_loss.set(ylabel="loss", title="training curves")
    ax_loss.legend(loc="upper right")
    ax_metric.plot(ends, [h.get(metric) for h in rows], "o-", c="C2")
    ax_metric.set(ylabel=f"validation {metric}")
    ax_lr.plot(x, lr, c="C3")
    ax_lr.set(ylabel="learning rate (last group)", xlabel="training step")  # linear: SGDR
    # anneals each cycle to 0, which a log scale would stretch over ten decades
    stages = [s["stage"] for s in steps]
    for i, stage in enumerate(stages):
        if i == 0 or stage != stages[i - 1]:  # where a stage starts: the unfreeze
            for ax in (ax_loss, ax_metric, ax_lr):
                ax.axvline(i + 0.5, c="grey", ls=":")
            label = {"head": " head (body frozen)", "all": " all layers"}.get(stage, f" {stage}")
            ax_lr.annotate(label, xy=(i + 1, 0.03), xycoords=("data", "axes fraction"))
    for ax in (ax_loss, ax_metric, ax_lr):
        ax.grid(alpha=0.3)
    save_figure(fig, path, show)
