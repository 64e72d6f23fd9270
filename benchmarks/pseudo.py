"""Pseudo-label benchmark: a k-fold run before and after `--pseudo-label`, on sets with few
labelled images and many test images.

The distillation benchmark's three sets (benchmarks/distill.py, made the same way): digits from
scratch (scikit-learn's 1,797 digits, `--labelled` for training, the rest the test set),
transfer 64 px JPEG (EfficientNet-Lite0 from its packaged ImageNet weights, at 64 px) and breeds
64 px PNG (the recipe kit new writes: Lite0 at 96 px); `--labelled` training photos, three
times as many test photos. The test labels are kept aside in solution.csv and scored here on
each run's submission. On each: one k-fold run
(`--folds` folds, the house schedule), then one pseudo-labelled run per threshold on the same
folds, fold k adding the test images fold k's own model labelled confidently. Each row: the test
images each fold took (mean), the share of their labels that is right, the out-of-fold score and
the held-out test score of what the run submits. A threshold is chosen on the out-of-fold
column; the held-out one is the claim it is judged by, and the gap between the two must not grow
(pseudo-labels that leaked validation labels would raise the out-of-fold score alone).

Run: `python -m benchmarks.pseudo [--work DIR] [--labelled 300] [--folds 3]
[--thresholds 0.9 0.99] [--sets digits transfer breeds]`. About 30 minutes on 2 idle cores.
"""

import argparse
import os
import sys
from pathlib import Path

import fastprogress.fastprogress as fastprogress
import numpy as np
import pandas as pd

import kit
from benchmarks import pages
from benchmarks.distill import NAMES, SETS, held_out, make, valid_score


def pseudo_stats(run_dir: Path, folds: int, truth: dict) -> tuple[float, float]:
    """(test images per fold, share of their pseudo-labels that are right)."""
    tables = [pd.read_csv(run_dir / f"fold{k}" / "pseudo.csv", dtype=str) for k in range(folds)]
    used = pd.concat(tables)
    right = (used["label"] == used["id"].map(truth)).mean() if len(used) else float("nan")
    return np.mean([len(t) for t in tables]), right


def one_set(name: str, args, work: Path) -> list[list]:
    """The rows of one set: the k-fold run, then one pseudo-labelled run per threshold."""
    recipe, metric, fields = SETS[name]
    folder, out = work / name / "data", work / name / "out"
    if not folder.exists():
        make(name, folder, args.labelled)
    truth = dict(pd.read_csv(folder / "solution.csv", dtype=str).values)
    common = dict(data=folder, out=out, device=args.device, folds=args.folds, **fields)
    base = Path(kit.run(recipe, **common)["run_dir"])
    rows = [[NAMES[name], "none (before)", 0, None, valid_score(metric, base),
             held_out(metric, folder, base)]]  # fmt: skip
    for t in args.thresholds:
        after = Path(
            kit.run(recipe, pseudo_label=base.name, pseudo_threshold=t, **common)["run_dir"]
        )
        used, right = pseudo_stats(after, args.folds, truth)
        rows.append([NAMES[name], f"{t:g}", used, right, valid_score(metric, after),
                     held_out(metric, folder, after)])  # fmt: skip
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=".bench/pseudo", type=Path)
    parser.add_argument("--labelled", default=300, type=int, help="training images per set")
    parser.add_argument("--folds", default=3, type=int)
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.9, 0.99])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    fastprogress.NO_BAR = True
    work = args.work.resolve() / f"labelled-{args.labelled}"
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # kit new writes, and kit finds, the breeds recipe in ./competitions
    with pages.quiet(work / "runs.log"):  # the runs' lines; the page is the table
        rows = [r for name in args.sets for r in one_set(name, args, work)]
    print(f"\n{args.labelled} labelled images a set, three times as many test images "
          f"(digits: all {1797 - args.labelled} others); {args.folds} folds; the house schedule; "
          "scores of the predictions each run submits")  # fmt: skip
    print("| set | --pseudo-threshold | test images per fold | their labels right | "
          "out-of-fold | held-out test |\n|---|---|---|---|---|---|")  # fmt: skip
    for set_, t, used, right, oof, test in rows:
        right = f"{right:.3f}" if right is not None else ""
        print(f"| {set_} | {t} | {used:.0f} | {right} | {oof:.4f} | {test:.4f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(pages.run(main, "pseudo"))
