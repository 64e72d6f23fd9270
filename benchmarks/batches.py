"""Small training sets: the least batches an epoch (`--min-batches`) against the recipe's batch.

A set of a few hundred images at the recipe's batch (digits: 128) made one or two steps an
epoch, and the house schedule's 7 epochs a handful of steps in all. `--min-batches N` shrinks
the batch (to 8 at least) until an epoch has N steps; a set with N batches or more at the
recipe's batch is not changed. Measured here on sets where it changes something, each run with
the recipe's defaults otherwise, scored on held-out labels no run saw:

- digits from scratch: scikit-learn's 1,797 digits in the Digit Recognizer layout, 300 for
  training and the rest as the test set (benchmarks/distill.py's set), and the bundled sample
  (1,437 / 360); the house digitnet, batch 128;
- transfer 64 px JPEG: 300 training and 900 test photos (benchmarks/photo_sets.py);
  EfficientNet-Lite0 from its packaged ImageNet weights, batch 32 (AUC);
- breeds 64 px PNG: nine classes, as many photos, through the recipe `kit new` writes (batch 64,
  log loss).

Run: `python -m benchmarks.batches [--work DIR] [--seeds 2] [--floors 1 16 32]`. About 25
minutes on 2 idle cores.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import fastprogress.fastprogress as fastprogress
import numpy as np

import kit
from benchmarks import pages
from benchmarks.distill import NAMES, SETS, held_out, make
from competitions import mnist

SAMPLE = "digits sample"  # the bundled Digit Recognizer sample, 1,437 training digits


def set_of(name: str) -> tuple:
    """(recipe, metric, fields) of a set: the sample is trained as the digits set is."""
    return SETS["digits" if name == SAMPLE else name]


def folder_of(name: str, work: Path) -> Path:
    folder = work / name.replace(" ", "-") / "data"
    if not folder.exists():
        if name == SAMPLE:
            folder.mkdir(parents=True)
            mnist.write_sample(folder)
        else:
            make(name, folder, 300)
    return folder


def one(name: str, floor: int, seed: int, work: Path, device: str) -> tuple[float, float]:
    """(held-out score, seconds) of one run with `--min-batches floor`."""
    recipe, metric, fields = set_of(name)
    folder = folder_of(name, work)
    start = time.perf_counter()
    out = kit.run(recipe, data=folder, out=work / "out", device=device, min_batches=floor,
                  seed=seed, **fields)  # fmt: skip
    return held_out(metric, folder, Path(out["run_dir"])), time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=".bench/batches", type=Path)
    parser.add_argument("--seeds", default=2, type=int)
    parser.add_argument("--floors", nargs="+", type=int, default=[1, 16, 32])
    parser.add_argument("--sets", nargs="+", default=[*SETS, SAMPLE], choices=[*SETS, SAMPLE])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    fastprogress.NO_BAR = True
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # kit new writes, and kit finds, the breeds recipe in ./competitions
    results = {}
    with pages.quiet(work / "runs.log"):
        for name in args.sets:
            for floor in args.floors:
                for seed in range(args.seeds):
                    results[name, floor, seed] = one(name, floor, seed, work, args.device)
    print(f"\nEach cell: the held-out score (seconds of the whole run), seeds 0-{args.seeds - 1} "
          "and their mean; `--min-batches 1` is the batch as the recipe sets it\n")  # fmt: skip
    print("| set (metric) | --min-batches | " + " | ".join(f"seed {s}" for s in range(args.seeds))
          + " | mean | mean time |\n|---|---|" + "---|" * (args.seeds + 2))  # fmt: skip
    for name in args.sets:
        metric = set_of(name)[1]
        for floor in args.floors:
            runs = [results[name, floor, s] for s in range(args.seeds)]
            cells = " | ".join(f"{score:.4f} ({secs:.0f} s)" for score, secs in runs)
            mean = np.mean([r[0] for r in runs])
            secs = np.mean([r[1] for r in runs])
            label = NAMES.get(name, "digits sample, 1,437 from scratch")
            print(f"| {label} ({metric}) | {floor} | {cells} | {mean:.4f} | {secs:.0f} s |")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(pages.run(main, "batches"))
