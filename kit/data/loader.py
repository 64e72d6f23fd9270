"""Batches gathered straight from uint8 tensors (in memory, or mapped from the image cache),
augmented on the whole batch."""

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from fastai.data.core import DataLoaders

from kit.data.augment import random_augment
from kit.data.images import read_rows
from kit.data.layouts import Data
from kit.recipe import Recipe


def model_input(
    xb, mean, std, augment=None, gen=None, channels_last=False, size=None
) -> torch.Tensor:
    """A uint8 batch as the network takes it: shrunk to `size` pixels if given (antialiased, as
    the cache's own resize), augmented (on 0-1 pixels) if `augment` is given, normalised by `mean`
    and `std` (per channel, on the 0-255 scale), NHWC if asked. Training, validation, TTA and
    `kit predict` all make their inputs here."""
    xb = xb.float()
    if size and size != xb.shape[-1]:
        xb = F.interpolate(xb, size=(size, size), mode="bilinear", antialias=True)
    if augment is not None:
        xb = augment(xb.div_(255), gen).mul_(255)
    xb = (xb - mean.to(xb.device)) / std.to(xb.device)
    return xb.contiguous(memory_format=torch.channels_last) if channels_last else xb


def scaled_stats(stats) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) lists per channel as (1, C, 1, 1) tensors on the 0-255 scale."""
    return tuple(torch.tensor(s, dtype=torch.float32).view(1, -1, 1, 1) * 255 for s in stats)


def gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """`x[idx]` for a CPU tensor: read from its cache file when it is a mapped image cache
    (kit/data/images.py), else through numpy: torch's indexing runs on OpenMP threads, which on
    busy cores wait on each other (measured on 2 loaded cores: 7.8 ms for 32 images of 64 px,
    against 0.015 ms through numpy)."""
    rows = idx.numpy()
    read = read_rows(x, rows)
    return read if read is not None else torch.from_numpy(x.numpy()[rows])


def ahead(make: Callable, n: int) -> Iterator:
    """`make(i)` for i in range(n), each made in a thread while the one before is in use."""
    with ThreadPoolExecutor(1) as pool:
        coming = pool.submit(make, 0) if n else None
        for i in range(n):
            made = coming.result()
            coming = pool.submit(make, i + 1) if i + 1 < n else None
            yield made


class TensorLoader:
    """Batches straight from uint8 tensors; augmentation and normalisation run on whole batches.

    `rows` is this loader's part of `x` and `y` (None: all): each batch is gathered from the
    full array, so a part is never copied out of it (a memory-mapped cache stays one copy).
    `size`, where set, shrinks every batch to that size on the device (--start-size).
    Implements what a fastai Learner asks of a data loader (`len`, iteration, `to`, `new`).
    """

    def __init__(
        self,
        x,
        y,
        bs,
        stats,
        shuffle=False,
        drop_last=False,
        augment: Callable | None = None,
        device="cpu",
        channels_last=False,
        seed=0,
        rows=None,
    ):
        self.x, self.y, self.bs, self.stats = x, y, bs, stats
        self.rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long)
        self.mean, self.std = scaled_stats(stats)
        self.shuffle, self.drop_last, self.augment = shuffle, drop_last, augment
        self.device, self.channels_last = torch.device(device), channels_last
        self.gen = torch.Generator().manual_seed(seed)
        self.n = len(x) if rows is None else len(self.rows)
        self.rank, self.world = 0, 1  # serves every world-th item of each epoch, from rank on
        self.size = None  # None: the images' own (cached) size

    def shard(self, rank: int, world: int):
        """Serve only this process's share of every epoch (several processes). A training
        loader's shares are cut to one length, so every process takes as many steps, and its
        batch is `world` times smaller: the recipe's bs stays the batch of one step."""
        self.rank, self.world = rank, world
        if self.shuffle:
            self.bs = max(1, self.bs // world)
        self.drop_last = self.drop_last and self.items() >= self.bs
        return self

    def items(self) -> int:
        """Items served per epoch."""
        if self.world == 1:
            return self.n
        return self.n // self.world if self.shuffle else len(range(self.rank, self.n, self.world))

    def __len__(self):
        n = self.items()
        return n // self.bs if self.drop_last else math.ceil(n / self.bs)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.gen) if self.shuffle else torch.arange(self.n)
        order = order[self.rank :: self.world][: self.items()]
        cuda = self.device.type == "cuda"

        def host(i: int) -> tuple[torch.Tensor, torch.Tensor]:
            idx = order[i * self.bs : (i + 1) * self.bs]
            idx = idx if self.rows is None else self.rows[idx]
            xb, yb = gather(self.x, idx), gather(self.y, idx)
            return (xb.pin_memory(), yb.pin_memory()) if cuda else (xb, yb)

        # on a GPU the next batch is read (and pinned, so that its copy does not hold up this
        # process) while the GPU works on this one; on the CPU every core runs the network
        batches = ahead(host, len(self)) if cuda else map(host, range(len(self)))
        for xb, yb in batches:
            xb = xb.to(self.device, non_blocking=True)
            xb = model_input(xb, self.mean, self.std, self.augment, self.gen, self.channels_last,
                             self.size)  # fmt: skip
            yield xb, yb.to(self.device, non_blocking=True)

    def to(self, device):
        self.device = torch.device(device)
        return self

    def new(self, shuffle=False, drop_last=False, augment=None, **_):
        """A copy in a fixed order with `augment` (a view function, for TTA) applied, or none."""
        fixed = (lambda xb, gen: augment(xb)) if augment is not None else None
        return TensorLoader(
            self.x,
            self.y,
            self.bs,
            self.stats,
            shuffle,
            drop_last,
            fixed,
            self.device,
            self.channels_last,
            rows=self.rows,
        )


def train_batch(r: Recipe, n: int) -> int:
    """The training batch for `n` images: the recipe's bs, smaller where that would make fewer
    than r.min_batches batches an epoch (auto: 16 from scratch, where the steps are what
    learns), but not under 8 (batch-norm statistics need a few)."""
    least = r.min_batches or (1 if r.pretrained else 16)
    return min(r.bs, max(n // least, 8))


def dataloaders(data: Data, r: Recipe, stats, device, valid: np.ndarray) -> DataLoaders:
    """fastai DataLoaders: the items at `valid` for validation, the rest for training."""
    train = np.setdiff1d(np.arange(len(data.y)), valid)
    bs = train_batch(r, len(train))

    def augment(xb, gen):
        return random_augment(xb, r, gen)

    common = dict(stats=stats, device=device, channels_last=r.channels_last)
    train_dl = TensorLoader(
        data.x,
        data.y,
        bs,
        rows=train,
        shuffle=True,
        drop_last=len(train) > bs,
        augment=augment,
        seed=r.seed,
        **common,
    )
    valid_dl = TensorLoader(data.x, data.y, r.bs, rows=valid, **common)
    return DataLoaders(train_dl, valid_dl, device=device)


def test_loader(data: Data, like: TensorLoader) -> TensorLoader:
    """The test images, in submission order, served like `like` (with placeholder labels of the
    training labels' shape where none are known: the loss is computed on every batch)."""
    shape = (len(data.test_x), *data.y.shape[1:])
    y = data.test_y if data.test_y is not None else torch.zeros(shape, dtype=data.y.dtype)
    return TensorLoader(
        data.test_x, y, like.bs, like.stats, device=like.device, channels_last=like.channels_last
    )
