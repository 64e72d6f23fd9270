"""What the training and prediction loops do per step, with a GPU in mind, checked on the CPU:
the step's loss is read once an epoch, not every step, and the values recorded stay the same."""

import sys
from pathlib import Path

import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.data.core import DataLoaders
from fastai.learner import Learner

from kit.data.loader import TensorLoader
from kit.train.curves import Steps

CURVES = str(Path("kit", "train", "curves.py"))
READS = ("__float__", "item", "tolist", "cpu", "numpy")  # what waits for a device's work


def tiny_learner() -> Learner:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 3, (40,), generator=gen)
    train = TensorLoader(x, y, 8, ([0.5], [0.25]), shuffle=True, drop_last=True, seed=0)
    valid = TensorLoader(x[:8], y[:8], 8, ([0.5], [0.25]))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    learn = Learner(DataLoaders(train, valid), model, loss_func=torch.nn.CrossEntropyLoss())
    learn.remove_cb(ProgressCallback)
    return learn


class Reference(Callback):
    """Each step's loss read as Steps used to read it, and the epochs counted as Checkpoint
    counts them (after Steps)."""

    order = 55

    def __init__(self, state):
        self.state, self.losses = state, []

    def after_batch(self):
        if self.training:
            self.losses.append(float(self.learn.loss.detach()))

    def after_epoch(self):
        self.state["history"].append({})


def test_steps_record_each_loss_as_read_every_step_and_read_the_device_once_an_epoch(
    monkeypatch,
):
    reads = []

    def counting(name):
        read = getattr(torch.Tensor, name)

        def counted(self, *a, **k):
            if sys._getframe(1).f_code.co_filename.endswith(CURVES):
                reads.append(name)
            return read(self, *a, **k)

        return counted

    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    state = {"stage": "all", "history": [], "steps": []}
    reference = Reference(state)
    tiny_learner().fit(3, 1e-2, cbs=[Steps(state), reference])
    assert [s["loss"] for s in state["steps"]] == reference.losses  # to the last bit
    assert [s["epoch"] for s in state["steps"]] == [0] * 5 + [1] * 5 + [2] * 5
    assert [list(s) for s in state["steps"]] == [["stage", "epoch", "loss", "lr"]] * 15
    assert len(reads) == 3  # one read an epoch, of its 5 steps (there were 15 reads before)
