"""`kit run NAME --nproc N` (or `kit.run(NAME, nproc=N)`): PyTorch's own launcher,
`python -m torch.distributed.run`, starts N copies of `kit run NAME`, which find each other
through the variables it sets (RANK, WORLD_SIZE, LOCAL_RANK; kit/train/distributed.py is what
each copy does). This process streams their output and reads back the run they wrote."""

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from kit.errors import KitError
from kit.files import read_json

# An interrupted launch: how long torchrun and its processes get to stop after SIGINT (torchrun
# passes it on; rank 0 then keeps what can be resumed), and after SIGTERM, before SIGKILL.
GRACE_S = 10.0


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
    runs = root / "runs" / name
    before = set(runs.iterdir()) if runs.is_dir() else set()
    argv = flags(options) + (["--resume", resume] if resume else [])
    opts = shlex.split(torchrun) if torchrun else ["--standalone"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), *opts,
           "-m", "kit.cli", "run", name, *argv]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if options.get("device") == "cpu":  # the cores shared out, as torchrun would with a warning
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        code, summary, errors = stream(cmd, env)
    except KeyboardInterrupt as e:
        run_id = resumable(runs, before, resume)
        more = f"; continue the run with `kit run {name} --resume {run_id} --nproc {nproc}`"
        raise KeyboardInterrupt(str(e) + (more if run_id else "")) from None
    new = sorted(set(runs.iterdir()) - before) if runs.is_dir() else []
    if code:
        run_id = resumable(runs, before, resume)
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


def resumable(runs: Path, before: set, resume: str | None) -> str | None:
    """The id of the run a stopped launch left to resume: the one it resumed, or the partial
    folder it made (rank 0 keeps one only when something was trained)."""
    new = sorted(set(runs.iterdir()) - before) if runs.is_dir() else []
    partial = [p for p in new if p.name.endswith(".partial")]
    return resume or (partial[0].name[1 : -len(".partial")] if partial else None)


def stream(cmd: list, env: dict) -> tuple[int, str, list[str]]:
    """Run `cmd`, printing its output line by line; returns its exit code, and what it printed
    that is not shown: torchrun's own log and failure report, and the processes' kit errors."""
    # in a session of its own: a terminal's Ctrl-C reaches this process alone (as a notebook's
    # interrupt does), and stop() ends torchrun and what it started in order
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True, bufsize=1, start_new_session=True)  # fmt: skip
    try:
        return relay(proc)
    except BaseException as e:
        workers = stop(proc)
        if isinstance(e, KeyboardInterrupt):
            them = f" and its {workers} processes" if workers else ""
            raise KeyboardInterrupt(f"stopped torchrun{them}") from None
        raise


def relay(proc: subprocess.Popen) -> tuple[int, str, list[str]]:
    """What stream() does with `proc`'s output, until it ends."""
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


def stop(proc: subprocess.Popen) -> int:
    """End torchrun and every process it started (each worker is in a session of its own, with
    its children): SIGINT, then SIGTERM and SIGKILL to those left after GRACE_S each; another
    Ctrl-C meanwhile skips the wait. Returns how many workers torchrun had."""
    if os.name == "nt":  # no process groups: torchrun alone, which stops its workers
        proc.kill()
        proc.wait()
        return 0
    groups, workers = {proc.pid}, set()
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # nobody blocks on a pipe
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        workers |= {pid for pid, parent, _, _ in processes() if parent == proc.pid}
        groups |= process_groups(proc.pid)  # found before torchrun ends and orphans them
        for group in groups:
            with contextlib.suppress(OSError):
                os.killpg(group, sig)
        try:
            if gone(proc, groups, GRACE_S):
                break
        except KeyboardInterrupt:
            continue
    proc.wait()
    return len(workers)


def gone(proc: subprocess.Popen, groups: set[int], seconds: float) -> bool:
    """Have every process of `groups` (torchrun's included) ended, within `seconds`?"""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None and not any(g in groups for _, _, g, _ in processes()):
            return True
        time.sleep(0.05)
    return False


def processes() -> list[tuple[int, int, int, str]]:
    """(pid, parent, process group, state) of every living process, read from /proc (Linux;
    elsewhere none: torchrun, which is told first, then stops its own)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        state, parent, group = stat[stat.rindex(")") + 2 :].split()[:3]  # after "(name)"
        if state not in "ZX":  # a zombie has ended, and is only waiting for its parent
            found.append((int(entry.name), int(parent), int(group), state))
    return found


def process_groups(root: int) -> set[int]:
    """The process groups of `root` and all its descendants."""
    table = processes()
    tree, groups = {root}, {root}
    while True:
        more = {pid for pid, parent, _, _ in table if parent in tree} - tree
        if not more:
            return groups
        tree |= more
        groups |= {group for pid, _, group, _ in table if pid in more}


def failure(summary: str, code: int, nproc: int, name: str, run_id: str | None) -> str:
    """One line for a failed launch: which process failed and how, and how to go on."""
    failed = re.findall(r"rank\s*:\s*(\d+).*?\n\s*exitcode\s*:\s*(-?\d+)", summary)
    # a process killed by a signal first: the others usually failed because of it; SIGABRT (6)
    # after other signals, since it is how a process dies when a collective it waits in fails
    # (gloo's lost peer, NCCL's watchdog): a process killed by 9 (the OOM killer) is the cause
    failed = sorted({(int(r), int(c)) for r, c in failed},
                    key=lambda f: (f[1] >= 0, f[1] == -6, f[0]))  # fmt: skip
    # SIGTERM is how torchrun stops the others once one has failed: name the ones that failed
    failed = [f for f in failed if f[1] != -15] or failed
    if failed:

        def why(c):
            return f"was killed by signal {-c}" if c < 0 else f"exited with code {c}"

        line = "; ".join(f"process {r} of {nproc} {why(c)}" for r, c in failed)
        line += "; torchrun stopped the others"
    else:
        line = f"torchrun exited with code {code}"
    if run_id:
        line += f"; continue the run with `kit run {name} --resume {run_id} --nproc {nproc}`"
    return line
