"""A run folder's life: reserved under a hidden partial name, named only when complete (or
kept for --resume when it stopped), and its submission published to submissions/<name>/."""

import platform
import re
import shutil
import sys
from datetime import datetime
from pathlib import Path

from kit.errors import KitError
from kit.files import read_json, write_new
from kit.paths import in_kaggle_notebook
from kit.runs.record import is_finished, read_record


def partial_dir(runs: Path, run_id: str) -> Path:
    """Where run `run_id` lives under `runs` until it is complete."""
    return runs / f".{run_id}.partial"


def arch_label(arch: str) -> str:
    """`arch` as a file name can hold it: a hub repo's or a folder's last part (`hf-hub:timm/x.tag`
    is `x.tag`), so that no run id holds a path."""
    return re.split(r"[/\\:]", arch.rstrip("/\\"))[-1]


def new_run_dir(root: Path, name: str, arch: str) -> tuple[str, Path]:
    """Reserve a fresh run id and create its (still partial) folder; never reuses an id."""
    runs = root / "runs" / name
    runs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        run_id = f"{stamp}-{arch_label(arch)}" + (f"-{n}" if n > 1 else "")
        taken = (runs / run_id).exists() or (root / "submissions" / name / f"{run_id}.csv").exists()
        if taken:
            continue
        try:
            partial_dir(runs, run_id).mkdir()
        except FileExistsError:
            continue
        return run_id, partial_dir(runs, run_id)
    raise KitError(f"could not find a free run id under {runs}; remove old runs")


def finish_run_dir(partial: Path, run_id: str) -> Path:
    """Give a complete run its real name; only complete runs carry one."""
    final = partial.parent / run_id
    if final.exists():
        raise KitError(f"run folder {final} appeared while training; nothing was overwritten")
    partial.rename(final)
    return final


def discard_run_dir(partial: Path) -> None:
    shutil.rmtree(partial, ignore_errors=True)


def stopped(partial: Path, name: str, run_id: str) -> None:
    """A run that stopped before it was complete: kept, with the command that continues it,
    when it had trained something (a checkpoint, or a model's predictions); else removed."""
    if any(partial.rglob("checkpoint.pth")) or any(partial.rglob("preds.npz")):
        print(f"run {run_id} stopped; continue it with `kit run {name} --resume {run_id}`",
              file=sys.stderr)  # fmt: skip
    else:
        discard_run_dir(partial)


def interrupted_run(root: Path, name: str, run_id: str) -> Path:
    """The partial folder of run `run_id`, which --resume continues; a KitError naming the runs
    that can be resumed when it is not one."""
    runs = root / "runs" / name
    partial = partial_dir(runs, run_id)
    if (runs / run_id).is_dir():
        raise KitError(f"run {run_id} has finished; nothing to resume (`kit runs {name}`)")
    if not (partial / "job.json").is_file():
        waiting = sorted(p.name[1:-8] for p in runs.glob(".*.partial")) if runs.is_dir() else []
        hint = f"; runs that can be resumed: {', '.join(waiting)}" if waiting else ""
        raise KitError(f"no interrupted run {run_id!r} in {runs}{hint}")
    return partial


def finished_run(runs: Path, name: str, run: str) -> Path:
    """The folder of the finished run `run` of `name` (its id under `runs`, or a folder); a
    KitError saying how to finish it, or where the runs are, when it is not one."""
    path = Path(run) if Path(run).is_dir() else runs / run
    if partial_dir(runs, Path(run).name).is_dir():
        raise KitError(f"run {run} is still incomplete; finish it with "
                       f"`kit run {name} --resume {Path(run).name}`")  # fmt: skip
    if not is_finished(path) or not (path / "recipe.json").is_file():
        raise KitError(f"no finished run {run!r} in {runs}; `kit runs {name}` lists them")
    made = read_json(path / "recipe.json").get("name")
    if made != name:
        raise KitError(f"run {run} was trained for {made}, not {name}")
    return path


def member_runs(run_dir: Path, name: str) -> list[Path]:
    """The finished runs an ensemble run blends, found beside it (as `kit kernel --predict`
    ships them); for any other run, the run itself."""
    record = read_record(run_dir)
    if not record.ensemble:
        return [run_dir]
    found = []
    for row in record.members:
        beside = run_dir.parent / row["run"]
        if not beside.is_dir():
            raise KitError(f"ensemble {run_dir.name} blends run {row['run']}, which is not beside "
                           f"it in {run_dir.parent}; copy the member runs there too")  # fmt: skip
        found.append(finished_run(run_dir.parent, name, str(beside)))
    return found


def publish(root: Path, name: str, run_dir: Path) -> Path:
    """A finished run's submission published under the run's id (`publish_text`)."""
    return publish_text(root, name, run_dir.name, (run_dir / "submission.csv").read_text())


def publish_text(root: Path, name: str, stem: str, text: str) -> Path:
    """A submission written to submissions/<name>/<stem>.csv (never over a file), and in a
    Kaggle notebook copied to submission.csv, the file Kaggle scores."""
    submission = write_new(text, root / "submissions" / name / f"{stem}.csv")
    if in_kaggle_notebook():
        shutil.copyfile(submission, root / "submission.csv")
    return submission


def versions(device) -> dict:
    """The libraries and machine a run used, written beside its outputs (versions.json)."""
    import fastai
    import numpy as np
    import pandas as pd
    import sklearn
    import timm
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "fastai": fastai.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
    }
