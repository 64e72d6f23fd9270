"""One model trained by several processes together (DistributedDataParallel): the callbacks
that make every process record the same losses and scores as one process would, each epoch's
validation split between them, and predictions sharded and gathered back in order. Which
process does what, and how they meet, is kit/train/distributed.py."""

import torch
import torch.distributed as dist
from fastai.callback.core import Callback
from fastai.learner import Recorder
from fastcore.foundation import L
from torch.nn.parallel import DistributedDataParallel

from kit.errors import KitError
from kit.train import distributed
from kit.train.callbacks import trains


def in_ddp(learn) -> bool:
    """Does `learn` train in DDP (with the DDP callback that `attach` adds)?"""
    return any(isinstance(cb, DDP) for cb in learn.cbs)


def from_main(learn, value):
    """Rank 0's `value` in every process training `learn` in DDP (e.g. the finder's rate)."""
    if not in_ddp(learn):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class SharedLoss(Callback):
    """Every process's loss replaced by their mean after each training step, so that what is
    recorded is the loss of the whole step's batch, the same in all: the training loss logged,
    and the finder's smoothed loss, which decides when it stops (each process then stops at the
    same step, when the loss of the whole batch diverges)."""

    order = Recorder.order - 1  # before the Recorder smooths it

    def after_batch(self):
        if self.training:
            loss = self.learn.loss.detach().clone()
            dist.all_reduce(loss)
            self.learn.loss = loss / distributed.world()


class SharedValidation(Callback):
    """Each process of a DDP run validates its own share of the validation set each epoch (in
    1/world of the time), and the shares' loss sums and predictions are put together before the
    Recorder scores them: every process records the whole set's scores. Rank 0's batch-norm
    statistics go to all first, so that every share is validated by the same model."""

    order = Recorder.order - 1  # puts the shares together before the Recorder reads the scores

    def before_validate(self):
        learn = self.learn
        # the epoch's validation, on a set with a share for every process
        n = distributed.world()
        self.shared = trains(learn) and learn.dl is learn.dls.valid and learn.dl.n >= n
        if self.shared:
            sync_buffers(learn)
            learn.dl.shard(distributed.rank(), distributed.world())

    def after_validate(self):
        if self.shared:
            self.learn.dl.shard(0, 1)
            put_together(self.recorder._valid_mets)


def put_together(metrics: list) -> None:
    """Every process's share of each of `metrics` combined, in every process: the sums and
    counts as objects, the predictions and targets as tensors (not pickled)."""
    sums = [None] * distributed.world()
    dist.all_gather_object(sums, [share(m) if hasattr(m, "total") else None for m in metrics])
    for i, m in enumerate(metrics):
        if hasattr(m, "total"):
            combine(m, [s[i] for s in sums])
        else:
            preds, targs = (everyone(torch.cat(list(x))) for x in share(m))
            combine(m, [([p], [t]) for p, t in zip(preds, targs)])


def share(metric) -> tuple:
    """What one process's share of a validation adds to `metric`: a loss's (or an average's) sum
    and count, or a metric's predictions and targets (fastai's AvgLoss, AvgMetric, AccumMetric)."""
    if hasattr(metric, "total"):
        return metric.total, metric.count
    return metric.preds, metric.targs


def combine(metric, shares: list[tuple]) -> None:
    """`metric` as if one process had validated every share."""
    if hasattr(metric, "total"):
        metric.total, metric.count = sum(s[0] for s in shares), sum(s[1] for s in shares)
    else:
        metric.preds, metric.targs = (
            [p for s in shares for p in s[0]],
            [t for s in shares for t in s[1]],
        )


class SharedScores(Callback):
    """Rank 0's scores of each epoch in every process of a DDP run, so that what is decided on
    them (the best model kept, early stopping, where a resumed stage carries on) is the same in
    all, to the last bit."""

    order = Recorder.order + 1  # after the Recorder has the epoch's scores, before their readers

    def after_epoch(self):
        if not trains(self.learn):
            return  # the finder (its losses already shared), or get_preds in a prediction
        box = [list(self.recorder.values[-1])]
        dist.broadcast_object_list(box, src=0)
        self.recorder.values[-1] = self.learn.final_record = L(box[0])


class DDP(Callback):
    """Wrap the model in DistributedDataParallel for each fit (gradients averaged over the
    processes, buffers from rank 0) and unwrap it after, for kit's and fastai's savers."""

    order = 5

    def before_fit(self):
        ids = [self.dls.device] if self.dls.device.type == "cuda" else None
        self.learn.model = DistributedDataParallel(self.learn.model, device_ids=ids)

    def after_fit(self):
        if isinstance(self.learn.model, DistributedDataParallel):
            self.learn.model = self.learn.model.module


def attach(learn, folds: int = 0, sync_bn: bool = False):
    """In a DDP run: this process's shard of the training data, the DDP wrapper, and with
    `sync_bn` batch norm whose statistics span every process's batch."""
    if distributed.ddp(folds):
        learn.dls.train.shard(distributed.rank(), distributed.world())
        if sync_bn:
            learn.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(learn.model)
        learn.add_cbs([DDP(), SharedLoss(), SharedValidation(), SharedScores()])
    return learn


def shard(learn, loader):
    """When `learn` trains in DDP, this process's part of a prediction loader."""
    return loader.shard(distributed.rank(), distributed.world()) if in_ddp(learn) else loader


def gather(learn, part: torch.Tensor, n: int) -> torch.Tensor:
    """The parts that `shard` gave each process put back in order: every item once, checked."""
    if not in_ddp(learn):
        return part
    parts = everyone(part.cpu())
    sizes = [len(p) for p in parts]
    if sizes != [len(range(r, n, distributed.world())) for r in range(distributed.world())]:
        raise KitError(f"gathered predictions of sizes {sizes} for {n} items; expected each "
                       "process's share once")  # fmt: skip
    out = torch.empty((n, *parts[0].shape[1:]), dtype=parts[0].dtype)
    for r, p in enumerate(parts):
        out[r :: distributed.world()] = p
    return out


def everyone(t: torch.Tensor) -> list[torch.Tensor]:
    """Every process's `t`, in rank order, sent as a tensor padded to the longest (the lengths
    may differ): pickling a whole set's predictions costs time and a copy in memory."""
    meta = [None] * distributed.world()
    dist.all_gather_object(meta, (len(t), tuple(t.shape[1:]), t.dtype))
    if len({m[1:] for m in meta}) > 1:
        raise KitError(f"the processes' predictions differ in shape or type: {meta}")
    nccl = dist.get_backend() == "nccl"  # whose collectives take only tensors on a GPU
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    padded = torch.zeros((max(m[0] for m in meta), *t.shape[1:]), dtype=t.dtype, device=device)
    padded[: len(t)] = t
    parts = [torch.empty_like(padded) for _ in meta]
    dist.all_gather(parts, padded)
    return [p[:length].to(t.device) for p, (length, _, _) in zip(parts, meta)]


def sync_buffers(learn) -> None:
    """Rank 0's batch-norm statistics in every process (after each recomputed them)."""
    if in_ddp(learn):
        for buf in learn.model.buffers():
            dist.broadcast(buf, src=0)
