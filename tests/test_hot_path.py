"""What the training and prediction loops do per step, with a GPU in mind, checked on the CPU:
the step's loss is read once an epoch, not every step, and the values recorded stay the same."""

import sys
import threading
from pathlib import Path

import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.data.core import DataLoaders
from fastai.learner import Learner

from kit.data.loader import TensorLoader
from kit.train.curves import Steps
from kit.train.progress import Progress

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

    def __init__(self, progress):
        self.progress, self.losses = progress, []

    def after_batch(self):
        if self.training:
            self.losses.append(float(self.learn.loss.detach()))

    def after_epoch(self):
        self.progress.end_epoch({})


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
    progress = Progress(stage="all")
    reference = Reference(progress)
    tiny_learner().fit(3, 1e-2, cbs=[Steps(progress), reference])
    assert [s["loss"] for s in progress.steps] == reference.losses  # to the last bit
    assert [s["epoch"] for s in progress.steps] == [0] * 5 + [1] * 5 + [2] * 5
    assert [list(s) for s in progress.steps] == [["stage", "epoch", "loss", "lr"]] * 15
    assert len(reads) == 3  # one read an epoch, of its 5 steps (there were 15 reads before)


def served(loader, epochs=2) -> list:
    return [(xb.clone(), yb.clone()) for _ in range(epochs) for xb, yb in loader]


def test_on_a_gpu_batches_are_pinned_read_ahead_copied_without_waiting_and_the_same(monkeypatch):
    """No GPU here: a copy to "cuda" stays on the CPU, noting how it was asked for."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (37, 3, 8, 8), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 5, (37,), generator=gen)

    def flip(xb, gen):  # draws from the loader's generator, as augmentation does
        return xb.flip(-1) if torch.rand(1, generator=gen) < 0.5 else xb

    def loader(device):
        return TensorLoader(x, y, 8, ([0.4] * 3, [0.2] * 3), shuffle=True, drop_last=True,
                            augment=flip, device=device, seed=3, rows=range(2, 37))  # fmt: skip

    expected = served(loader("cpu"))
    pins, copies, to = [], [], torch.Tensor.to

    def pin(self):
        pins.append(threading.current_thread() is threading.main_thread())
        return self

    def copy(self, *a, **k):
        if a and isinstance(a[0], torch.device) and a[0].type == "cuda":
            copies.append(k.get("non_blocking"))
            return self
        return to(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    monkeypatch.setattr(torch.Tensor, "to", copy)
    assert served(loader("cpu")) and not pins and not copies  # the CPU's path: as it was
    got = served(loader("cuda"))
    assert len(got) == len(expected) == 8
    for (xb, yb), (xe, ye) in zip(got, expected):
        assert torch.equal(xb, xe) and torch.equal(yb, ye)
    assert pins == [False] * 16  # images and labels of each batch, pinned in the reading thread
    assert copies == [True] * 16
