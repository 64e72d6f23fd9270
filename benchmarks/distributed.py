"""Several processes: training images/s of `kit run mnist` in 1 and N processes, DDP against one
fold per device. Prints the README's table.

Each row is one real `kit run` (pinned learning rate, no TTA, `--epochs` SGDR epochs) on a
Kaggle-layout folder of `--rows` augmented copies of the sample's digits (benchmarks/mnist.py
builds it). images/s = training images seen / wall time of the whole command, so process
start, data loading, prediction and plots count against it: that is what a user waits for.
On a machine without CUDA the GPU rows are printed as not measured.

Run: `python benchmarks/distributed.py [--rows 8000] [--epochs 2] [--nproc 2] [--work DIR]`.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from mnist import build_folder  # noqa: E402

from kit.data.sample import write_sample  # noqa: E402

KIT = Path(sys.executable).with_name("kit")


def timed_run(data: Path, out: Path, argv: list[str]) -> tuple[float, dict]:
    """Wall seconds of one `kit run mnist`, and its metrics."""
    start = time.perf_counter()
    done = subprocess.run([KIT, "run", "mnist", "--data", data, "--out", out, *argv],
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"kit run {' '.join(map(str, argv))} failed:\n{done.stderr[-2000:]}")
    (run_dir,) = (out / "runs" / "mnist").iterdir()
    return wall, json.loads((run_dir / "metrics.json").read_text())


def rows(n: int, device: str) -> list[tuple[str, list[str]]]:
    """(label, flags) for each configuration on `device`."""
    one, many = ["--device", device], ["--device", device, "--nproc", str(n)]
    return [
        ("1 process", one),
        (f"DDP, {n} processes", many),
        (f"{n} folds, 1 process", [*one, "--folds", str(n)]),
        (f"{n} folds, one per device ({n} processes)", [*many, "--folds", str(n)]),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=8000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--work", type=Path, default=None)
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kit-bench-"))
    sample = write_sample("mnist", work / "sample") if not (work / "sample").exists() else None
    data = work / "digits"
    if not data.exists():
        build_folder(sample or work / "sample", data, args.rows)
    schedule = ["--lr", "3e-3", "--no-tta", "--cycles", str(args.epochs), "--cycle-mult", "1"]
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    print(f"{args.rows} training rows, {args.epochs} epochs, batch 128 (the recipe's)\n")
    print("| device | configuration | wall s | images/s | valid accuracy |")
    print("|---|---|---|---|---|")
    for device in ("cpu", "cuda"):
        for label, argv in rows(args.nproc, device):
            if device == "cuda" and gpus < args.nproc:
                print(f"| cuda | {label} | not measured | not measured | |")
                continue
            out = work / f"out-{device}-{len(list(work.glob(f'out-{device}-*')))}"
            wall, m = timed_run(data, out, [*argv, *schedule])
            seen = m["epochs"] * round(args.rows * (1 - 0.1))  # valid_pct 0.1 held out
            if m["folds"]:  # each fold trains on (K-1)/K of the rows, for its own epochs
                seen = m["epochs"] * round(args.rows * (m["folds"] - 1) / m["folds"])
            oof = " (out of fold)" if m["folds"] else ""
            print(f"| {device} | {label} | {wall:.0f} | {seen / wall:.0f} | "
                  f"{m['valid_accuracy']:.4f}{oof} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    import pages  # the docs page: what this printed

    sys.exit(pages.run(main, "distributed"))
