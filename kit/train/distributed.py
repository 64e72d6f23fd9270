"""What each of several processes started by torchrun does (kit/train/launch.py starts them):
join the others, then either train one model on its own shard of every epoch with
DistributedDataParallel averaging the gradients, or with --folds train its own folds on its own
device, with no DDP. The process of rank 0 writes the run folder; in a DDP run the others work
in a scratch copy of it that is thrown away."""

import contextlib
import functools
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from fastai.callback.core import Callback
from fastai.learner import Recorder
from fastcore.foundation import L
from torch.nn.parallel import DistributedDataParallel

from kit.errors import KitError
from kit.train.callbacks import trains

# How long a process waits at a collective (a DDP step, a broadcast of rank 0's decision, a
# gather of predictions) for the others. Every process reaches those within seconds of each
# other; PyTorch's own 30 minutes leave room for a first epoch of uneven folds, a slow disk, or
# a busy machine, and a mismatch (a bug) ends the run in 30 minutes instead of hanging.
TIMEOUT_MIN = 30.0
# A process that waits for another's work alone (rank 0 unpacking archives and resizing photos,
# the other processes training their folds) waits as long as that work takes. It cannot wait
# there for ever: the process it waits for finishes, dies (torchrun then stops the others), or
# is stuck at a collective, whose TIMEOUT_MIN ends the run.
PATIENCE = timedelta(days=7)
# How long a process looks for a file that rank 0 has just written in the run folder before it
# concludes that it does not share rank 0's filesystem (a network mount may show it late).
SHARED_S = 5.0


def timeout() -> timedelta:
    """$KIT_DIST_TIMEOUT minutes, or TIMEOUT_MIN."""
    value = os.environ.get("KIT_DIST_TIMEOUT", "") or str(TIMEOUT_MIN)
    try:
        minutes = float(value)
    except ValueError:
        minutes = -1.0
    if not minutes > 0:
        raise KitError(f"KIT_DIST_TIMEOUT={value!r}: give the minutes a process waits for the "
                       f"others, e.g. {TIMEOUT_MIN:g}")  # fmt: skip
    return timedelta(minutes=minutes)


def in_worker() -> bool:
    """Started by torchrun (ours or the user's), as one of several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ


def setup(device: torch.device) -> torch.device:
    """Join the other processes (once) and return this process's device. Two things change for
    the rest of the process: torchrun's variables are hidden from fastai, and outside rank 0
    standard output goes nowhere, so that one process reports (errors still show)."""
    if not in_worker() and not dist.is_initialized():
        return device
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank() if dist.is_initialized() else 0))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout())
        patient()  # made now, by every process at once, as a group must be
        # fastai reads these to skip saving outside rank 0 and to add barriers: kit decides
        # what each process writes, and the folds of different processes never meet
        for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            os.environ.pop(var, None)
    if not is_main():
        sys.stdout = open(os.devnull, "w")
    return device


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def ddp(folds: int) -> bool:
    """Several processes training one model together (with --folds, each trains its own)."""
    return world() > 1 and not folds


def in_ddp(learn) -> bool:
    """Does `learn` train in DDP (with the DDP callback that `attach` adds)?"""
    return any(isinstance(cb, DDP) for cb in learn.cbs)


def my_folds(folds: int) -> range:
    """The models (folds) this process trains: all of them, or every world-th fold."""
    n = max(1, folds)
    return range(rank(), n, world()) if world() > 1 and folds else range(n)


def barrier() -> None:
    """Every process here, within the timeout of a collective."""
    if world() > 1:
        dist.barrier()


@functools.cache
def patient() -> dist.ProcessGroup:
    """Every process, in a group whose barrier waits PATIENCE."""
    return dist.new_group(backend="gloo", timeout=PATIENCE)


def wait_for_all() -> None:
    """Every process here, however long the others' own work takes (see PATIENCE)."""
    if world() > 1:
        dist.barrier(group=patient())


def on_main(fn):
    """`fn()` run by rank 0 alone, its result given to every process."""
    if world() == 1:
        return fn()
    box = [fn() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def from_main(learn, value):
    """Rank 0's `value` in every process training `learn` in DDP (e.g. the finder's rate)."""
    if not in_ddp(learn):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (writing shared files: the sample, an image cache), then the
    others, which find the files there."""
    if not is_main():
        wait_for_all()
    yield
    if is_main():
        wait_for_all()


@contextlib.contextmanager
def workspace(partial: Path, folds: int):
    """Where this process writes: the run folder, or in a DDP run outside rank 0 a scratch copy
    (a resumed run's checkpoints included), removed afterwards."""
    shared(partial)
    if not ddp(folds):
        yield partial
        return
    if is_main():
        barrier()  # until the others have their copies: rank 0 writes into it from now on
        yield partial
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"kit-rank{rank()}-"))
    try:
        shutil.copytree(partial, scratch / "run")
        barrier()
        yield scratch / "run"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def shared(folder: Path) -> None:
    """A KitError in every process unless all of them see rank 0's run `folder` (processes on
    several machines with no filesystem in common): the others write their folds there and
    copy its checkpoints, and rank 0 reads their folds back."""
    if world() == 1:
        return
    mark = on_main(lambda: written(folder / f".shared-{secrets.token_hex(8)}"))
    deadline = time.monotonic() + SHARED_S
    while not (seen := (folder / mark).is_file()) and time.monotonic() < deadline:
        time.sleep(0.1)
    found = [None] * world()
    dist.all_gather_object(found, (seen, socket.gethostname()))
    if is_main():
        (folder / mark).unlink(missing_ok=True)
    barrier()  # gone before anyone copies the folder
    blind = [(r, host) for r, (seen, host) in enumerate(found) if not seen]
    if blind:
        r, host = blind[0]
        raise KitError(f"process {r} of {world()} (on {host}) does not see the run folder "
                       f"{folder} that process 0 (on {found[0][1]}) writes: a run on several "
                       "machines needs --out on a filesystem that they all share, at the same "
                       "path (e.g. NFS); or train on one machine")  # fmt: skip


def written(path: Path) -> str:
    """The name of `path`, created empty."""
    path.touch(exist_ok=False)
    return path.name


@contextlib.contextmanager
def timeouts_in_one_line():
    """A collective that waited too long for the others, said in one line that names this
    process (NCCL's own watchdog stops the process instead: torchrun then reports it)."""
    try:
        yield
    except RuntimeError as e:
        text = str(e).strip()  # fastai puts "Exception occured in `DDP`..." on a line above
        said = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[-1].strip() if text else "")
        collective = isinstance(e, dist.DistError) or "gloo" in text.lower()
        if world() == 1 or not collective or not re.search(r"timed out|timeout", said, re.I):
            raise
        minutes = timeout().total_seconds() / 60
        raise KitError(
            f"process {rank()} of {world()} waited {minutes:g} min for the others at a "
            f"collective ({said[:120]}): another process is stuck, or much slower (if only "
            "slower, set KIT_DIST_TIMEOUT to more minutes)"
        ) from None


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
            self.learn.loss = loss / world()


class SharedValidation(Callback):
    """Each process of a DDP run validates its own share of the validation set each epoch (in
    1/world of the time), and the shares' loss sums and predictions are put together before the
    Recorder scores them: every process records the whole set's scores. Rank 0's batch-norm
    statistics go to all first, so that every share is validated by the same model."""

    order = Recorder.order - 1  # puts the shares together before the Recorder reads the scores

    def before_validate(self):
        learn = self.learn
        # the epoch's validation, on a set with a share for every process
        self.shared = trains(learn) and learn.dl is learn.dls.valid and learn.dl.n >= world()
        if self.shared:
            sync_buffers(learn)
            learn.dl.shard(rank(), world())

    def after_validate(self):
        if self.shared:
            self.learn.dl.shard(0, 1)
            put_together(self.recorder._valid_mets)


def put_together(metrics: list) -> None:
    """Every process's share of each of `metrics` combined, in every process: the sums and
    counts as objects, the predictions and targets as tensors (not pickled)."""
    sums = [None] * world()
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
    if ddp(folds):
        learn.dls.train.shard(rank(), world())
        if sync_bn:
            learn.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(learn.model)
        learn.add_cbs([DDP(), SharedLoss(), SharedValidation(), SharedScores()])
    return learn


def shard(learn, loader):
    """When `learn` trains in DDP, this process's part of a prediction loader."""
    return loader.shard(rank(), world()) if in_ddp(learn) else loader


def gather(learn, part: torch.Tensor, n: int) -> torch.Tensor:
    """The parts that `shard` gave each process put back in order: every item once, checked."""
    if not in_ddp(learn):
        return part
    parts = everyone(part.cpu())
    sizes = [len(p) for p in parts]
    if sizes != [len(range(r, n, world())) for r in range(world())]:
        raise KitError(f"gathered predictions of sizes {sizes} for {n} items; expected each "
                       "process's share once")  # fmt: skip
    out = torch.empty((n, *parts[0].shape[1:]), dtype=parts[0].dtype)
    for r, p in enumerate(parts):
        out[r :: world()] = p
    return out


def everyone(t: torch.Tensor) -> list[torch.Tensor]:
    """Every process's `t`, in rank order, sent as a tensor padded to the longest (the lengths
    may differ): pickling a whole set's predictions costs time and a copy in memory."""
    meta = [None] * world()
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
