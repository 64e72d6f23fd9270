"""Pseudo-label benchmark: a k-fold run before and after `--pseudo-label`, on a set with few
labelled images and many test images.

scikit-learn's 1,797 handwritten digits in the Digit Recognizer layout (as the bundled sample
writes them, 28 px): `--labelled` of them (stratified) are the training images, all the others
the test images, whose labels are kept aside in solution.csv, so the kit prints a held-out score
beside the out-of-fold one. The house digitnet, from scratch, `--folds` folds; then one
pseudo-labelled run per threshold on the same folds. Each row: the test images each fold took
(mean), how many of those labels were right, the out-of-fold and the held-out accuracy. The
threshold is chosen on the out-of-fold column (the held-out one is the claim it is judged by).

Run: `python benchmarks/pseudo.py [--work DIR] [--labelled 300] [--folds 5] [--set lr=3e-3]`.
About 10 minutes on 2 idle cores.
"""

import argparse
import ast
import sys
from pathlib import Path

import fastprogress.fastprogress as fastprogress
import numpy as np
import pandas as pd

import kit
from competitions import mnist


def write_digits(dest: Path, labelled: int, seed: int) -> Path:
    """The digits as competitions/mnist.py's sample writes them, `labelled` for training."""
    dest.mkdir(parents=True, exist_ok=True)
    mnist.write_sample(dest, seed, labelled)
    return dest


def pseudo_stats(run_dir: Path, folds: int, truth: dict) -> tuple[float, float]:
    """(test images per fold, share of their pseudo-labels that are right)."""
    tables = [pd.read_csv(run_dir / f"fold{k}" / "pseudo.csv", dtype=str) for k in range(folds)]
    used = pd.concat(tables)
    right = (used["label"] == used["id"].map(truth)).mean() if len(used) else float("nan")
    return np.mean([len(t) for t in tables]), right


def submitted(result: dict) -> float:
    """The out-of-fold accuracy of the predictions the run submits (with TTA or without)."""
    return result[f"valid{'_tta' if result['submitted'] == 'tta' else ''}_accuracy"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=".bench/pseudo", type=Path)
    parser.add_argument("--labelled", default=300, type=int)
    parser.add_argument("--folds", default=5, type=int)
    parser.add_argument("--seed", default=0, type=int, help="seeds the labelled/test split")
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.5, 0.8, 0.9, 0.95, 0.99])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="recipe fields of every run, e.g. lr=3e-3 tta=False")  # fmt: skip
    args = parser.parse_args()
    fastprogress.NO_BAR = True
    out = args.work / f"digits-{args.labelled}-seed{args.seed}"
    folder = write_digits(out / "data", args.labelled, args.seed)
    truth = dict(pd.read_csv(folder / "solution.csv", dtype=str).values)
    fields = {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    common = dict(data=folder, out=out, device=args.device, **fields)
    base = kit.run("mnist", folds=args.folds, **common)
    base_id = Path(base["run_dir"]).name
    rows = [["none (before)", 0, None, submitted(base), base["test_accuracy"]]]
    for t in args.thresholds:
        after = kit.run("mnist", pseudo_label=base_id, pseudo_threshold=t, **common)
        used, right = pseudo_stats(Path(after["run_dir"]), args.folds, truth)
        rows.append([f"{t:g}", used, right, submitted(after), after["test_accuracy"]])
    n_test = len(truth)
    print(f"\ndigits from scratch: {args.labelled} labelled, {n_test} test, {args.folds} folds "
          f"(digitnet, the house schedule; accuracy, submitted predictions)")  # fmt: skip
    print("| --pseudo-threshold | test images per fold | their labels right | out-of-fold | "
          "held-out test |\n|---|---|---|---|---|")  # fmt: skip
    for t, used, right, oof, test in rows:
        right = f"{right:.3f}" if right is not None else ""
        print(f"| {t} | {used:.0f} | {right} | {oof:.4f} | {test:.4f} |")


if __name__ == "__main__":
    import pages  # the docs page: what this printed

    sys.exit(pages.run(main, "pseudo"))
