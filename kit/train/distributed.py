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

from kit.errors import KitError

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
