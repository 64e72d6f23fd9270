"""Several processes: DistributedDataParallel, or one fold per device, started by torchrun.

`kit run NAME --nproc N` (or `kit.run(NAME, nproc=N)`) starts PyTorch's own launcher,
`python -m torch.distributed.run`, which starts N copies of `kit run NAME`; they find each
other through the variables it sets (RANK, WORLD_SIZE, LOCAL_RANK). With `--folds K` each
process trains its own folds on its own device, with no DDP; otherwise each process trains on
its own shard of every epoch and DDP averages the gradients. The process of rank 0 writes the
run folder; the others work in a scratch copy of it that is thrown away.
"""

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from fastai.callback.core import Callback
from torch.nn.parallel import DistributedDataParallel

from kit.errors import KitError

FOLDS = {"on": False}  # set in a worker: one fold per device (no DDP)
# A process may wait at a barrier while another trains its folds: far longer than the default
# 30 minutes. A process that dies is seen by torchrun, which stops the others at once.
TIMEOUT = timedelta(hours=12)


# --- in the launching process ---------------------------------------------------------------


def in_worker() -> bool:
    """Started by torchrun (ours or the user's), as one of several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ


def resolve_nproc(nproc, device: str = "auto", sync_bn=False) -> int:
    """How many processes `--nproc` asks for on this machine; bad requests are one line."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if sync_bn and (device == "cpu" or not gpus):
        raise KitError("--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm runs only there); "
                       "drop it on the CPU")  # fmt: skip
    if nproc in (None, "auto"):
        return gpus if gpus and device != "cpu" else 1
    try:
        n = int(nproc)
    except ValueError:
        raise KitError(f"--nproc {nproc!r} is not a number; give a count, or auto") from None
    if n < 1:
        raise KitError(f"--nproc {n}: give at least 1 process")
    if n > 1 and device != "cpu" and not device.startswith("cuda:"):
        if not gpus:
            raise KitError(f"--nproc {n} asks for {n} GPUs, and torch sees none; add "
                           f"--device cpu to run {n} processes on the CPU")  # fmt: skip
        if n > gpus:
            raise KitError(f"--nproc {n} asks for {n} GPUs, and torch sees {gpus}; use "
                           f"--nproc {gpus} (or auto)")  # fmt: skip
    if n > 1 and device.startswith("cuda:"):
        raise KitError(f"--nproc {n} puts one process on each GPU; drop --device {device}")
    return n


def flags(options: dict) -> list[str]:
    """`kit run`'s command-line flags for `run()`'s keyword options."""
    argv = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or (value is False and key == "sample"):
            continue
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append("--no-" + key.replace("_", "-"))
        else:
            argv += [flag, str(value)]
    return argv


def launch(name, nproc: int, root: Path, options: dict, resume=None, torchrun="", show=False):
    """Run `kit run NAME` in `nproc` processes under torchrun, its output streamed here (into
    a notebook's cell too), then its plots shown if `show`; returns what `run` returns, read
    from the run folder."""
    from kit.records import read_json

    runs = root / "runs" / name
    before = set(runs.iterdir()) if runs.is_dir() else set()
    argv = flags(options) + (["--resume", resume] if resume else [])
    opts = shlex.split(torchrun) if torchrun else ["--standalone"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), *opts,
           "-m", "kit.cli", "run", name, *argv]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if options.get("device") == "cpu":  # the cores shared out, as torchrun would with a warning
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    code, summary, errors = stream(cmd, env)
    new = sorted(set(runs.iterdir()) - before) if runs.is_dir() else []
    if code:
        partial = [p for p in new if p.name.endswith(".partial")]
        run_id = resume or (partial[0].name[1 : -len(".partial")] if partial else None)
        if errors:  # a process said what was wrong (bad data...): that is the one line
            raise KitError(errors[0].removeprefix("kit: error: ").rstrip())
        raise KitError(failure(summary, code, nproc, name, run_id))
    finished = [p for p in new if not p.name.startswith(".")]
    run_dir = runs / resume if resume else finished[-1]
    if show:
        from IPython.display import Image, display

        for png in sorted(run_dir.rglob("*.png")):
            display(Image(filename=png))
    return {**read_json(run_dir / "metrics.json"), "run_dir": str(run_dir),
            "submission": str(root / "submissions" / name / f"{run_dir.name}.csv")}  # fmt: skip


def stream(cmd: list, env: dict) -> tuple[int, str, list[str]]:
    """Run `cmd`, printing its output line by line; returns its exit code, and what it printed
    that is not shown: torchrun's own log and failure report, and the processes' kit errors."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True, bufsize=1)  # fmt: skip
    summary, traceback, errors = [], None, []
    for line in proc.stdout:
        if summary or re.match(r"^\[?[WIE]\d{4} ", line):  # torchrun's own log and report
            summary.append(line)
        elif traceback is not None or line.startswith("Traceback (most recent call last)"):
            traceback = [*(traceback or []), line]
            if not line.startswith((" ", "Traceback")):  # its last line: whose was it?
                text = "".join(traceback)
                if "torch/distributed/run.py" in text or "ChildFailedError" in text:
                    summary += traceback
                else:
                    print(text, end="", flush=True)
                traceback = None
        elif line.startswith("kit: error:"):  # every process says it: the launcher says it once
            errors.append(line)
        else:
            print(line, end="", flush=True)
    return proc.wait(), "".join(summary), errors


def failure(summary: str, code: int, nproc: int, name: str, run_id: str | None) -> str:
    """One line for a failed launch: which process failed and how, and how to go on."""
    failed = re.findall(r"rank\s*:\s*(\d+).*?\n\s*exitcode\s*:\s*(-?\d+)", summary)
    failed = sorted({(int(r), int(c)) for r, c in failed}, key=lambda f: (f[1] >= 0, f[0]))
    # SIGTERM is how torchrun stops the others once one has failed: name the ones that failed
    failed = [f for f in failed if f[1] != -15] or failed
    if failed:  # a process killed by a signal first: the others usually failed because of it

        def why(c):
            return f"was killed by signal {-c}" if c < 0 else f"exited with code {c}"

        line = "; ".join(f"process {r} of {nproc} {why(c)}" for r, c in failed)
        line += "; torchrun stopped the others"
    else:
        line = f"torchrun exited with code {code}"
    if run_id:
        line += f"; continue the run with `kit run {name} --resume {run_id} --nproc {nproc}`"
    return line


# --- in a worker ----------------------------------------------------------------------------


def setup(device: torch.device, folds: int) -> torch.device:
    """Join the other processes (once) and return this process's device."""
    if not in_worker() and not dist.is_initialized():
        return device
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank() if dist.is_initialized() else 0))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
        # fastai reads these to skip saving outside rank 0 and to add barriers: kit decides
        # what each process writes, and the folds of different processes never meet
        for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            os.environ.pop(var, None)
    FOLDS["on"] = folds > 0
    if not is_main():
        sys.stdout = open(os.devnull, "w")  # one process reports (errors still show)
    return device


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def ddp() -> bool:
    """Training one model in several processes (rather than one fold per process)."""
    return world() > 1 and not FOLDS["on"]


def my_units(n: int) -> range:
    """The units (folds) this process trains: all of them, or every world-th one."""
    return range(rank(), n, world()) if world() > 1 and FOLDS["on"] else range(n)


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def share(fn):
    """`fn()` run by rank 0 alone, its result given to every process."""
    if world() == 1:
        return fn()
    box = [fn() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def same(value):
    """Rank 0's `value` in every process of a DDP run (e.g. the finder's rate)."""
    if not ddp():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (writing shared files: the sample, an image cache), then the
    others, which find the files there."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


@contextlib.contextmanager
def workspace(partial: Path):
    """Where this process writes: the run folder, or in a DDP run outside rank 0 a scratch copy
    (a resumed run's checkpoints included), removed afterwards."""
    if not ddp():
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


def attach(learn, sync_bn: bool = False):
    """In a DDP run: this process's shard of the training data, the DDP wrapper, and with
    `sync_bn` batch norm whose statistics span every process's batch."""
    if ddp():
        learn.dls.train.shard(rank(), world())
        if sync_bn:
            learn.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(learn.model)
        learn.add_cb(DDP())
    return learn


def shard(loader):
    """In a DDP run, this process's part of a prediction loader."""
    return loader.shard(rank(), world()) if ddp() else loader


def gather(part: torch.Tensor, n: int) -> torch.Tensor:
    """The parts that `shard` gave each process put back in order: every item once, checked."""
    if not ddp():
        return part
    parts = [None] * world()
    dist.all_gather_object(parts, part.cpu())
    sizes = [len(p) for p in parts]
    if sizes != [len(range(r, n, world())) for r in range(world())]:
        raise KitError(f"gathered predictions of sizes {sizes} for {n} items; expected each "
                       "process's share once")  # fmt: skip
    out = torch.empty((n, *parts[0].shape[1:]), dtype=parts[0].dtype)
    for r, p in enumerate(parts):
        out[r :: world()] = p
    return out


def sync_buffers(model) -> None:
    """Rank 0's batch-norm statistics in every process (after each recomputed them)."""
    if ddp():
        for buf in model.buffers():
            dist.broadcast(buf, src=0)
